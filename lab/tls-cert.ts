/**
 * A throwaway self-signed certificate for loopback TLS in tests and benchmarks: the real OpenSSL
 * builds do a full handshake with it (signing on the server, verifying where the client checks it).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Writes DIR/key.pem and DIR/cert.pem (CN `cn`, plus the SANs in `altNames`) and returns the certificate. */
export function selfSignedCert(dir: string, cn = 'localhost', altNames: string[] = []): Buffer {
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
      '-days',
      '2',
      '-subj',
      `/CN=${cn}`,
      ...(altNames.length ? ['-addext', `subjectAltName=${altNames.join(',')}`] : []),
    ],
    { stdio: 'ignore' },
  );
  return readFileSync(join(dir, 'cert.pem'));
}
