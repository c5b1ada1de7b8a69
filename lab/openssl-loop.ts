/**
 * Debian's python3 running test/fixtures/real/openssl_loop.py: hashes, HMACs and TLS handshakes over
 * loopback in a loop, one JSON line per round, every result checked against a known answer. The real
 * OpenSSL test and the pause benchmark both run it on the real builds, from a private folder.
 */
import { join } from 'node:path';
import { ROOT } from './cli.js';
import { startTarget, type Target } from './target.js';
import { selfSignedCert } from './tls-cert.js';

export const PYTHON = '/usr/bin/python3';

export interface Round {
  round: number;
  ok: boolean;
  error?: string;
}

/** The rounds the loop has printed in `out`. */
export const openSslRounds = (out: string): Round[] =>
  out
    .split('\n')
    .filter((l) => l.startsWith('{"round"'))
    .map((l) => JSON.parse(l) as Round);

/**
 * The loop on the libcrypto and libssl in `libDir` (LD_LIBRARY_PATH), with a certificate written into
 * `certDir`, once it has completed three rounds. The caller disposes of the target.
 */
export async function startOpenSslLoop(certDir: string, libDir: string): Promise<Target> {
  selfSignedCert(certDir);
  const target = startTarget(
    [
      PYTHON,
      join(ROOT, 'test/fixtures/real/openssl_loop.py'),
      join(certDir, 'cert.pem'),
      join(certDir, 'key.pem'),
      '--sleep',
      '0.02',
    ],
    { LD_LIBRARY_PATH: libDir },
  );
  await target.waitFor((o) => openSslRounds(o).length >= 3, 60_000);
  return target;
}
