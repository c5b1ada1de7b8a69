/**
 * One worker thread of `--all` (all.ts runPool): once started it says
 * 'ready', then it is given one pid at a time, applies or reverts the bundle there with runOne, and posts the
 * outcome back. Each worker is its own OS thread and so its own tracer: the
 * ptrace calls of a process stay on the thread that attached it, and a
 * worker's blocking waits (runtime/sys/wait.ts) let the others run meanwhile.
 * Signals are never delivered to a worker; the main thread decides when to
 * stop giving out pids, so a process is always finished once started.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Bundle } from '../patches/index.js';
import { ElfCache } from '../runtime/loader/index.js';
import { runOneOutcome, toBuffers, type WorkerData, type WorkerReply, type WorkerRequest } from './all.js';

const data = workerData as WorkerData;
const bundle = toBuffers(data.bundle) as Bundle;
// Most processes map the same libraries: each worker parses each file once for the whole run.
const elfCache = new ElfCache();

parentPort!.on('message', (msg: WorkerRequest) => {
  const reply: WorkerReply = { outcome: runOneOutcome(msg.pid, bundle, { ...data.opts, elfCache }) };
  parentPort!.postMessage(reply);
});
parentPort!.postMessage('ready');
