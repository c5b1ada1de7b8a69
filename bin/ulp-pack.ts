#!/usr/bin/env node
import { setFlagsFromString } from 'node:v8';

// ulp-pack is a one-shot run of about a second in which most code runs once or a few times: with V8's default
// tier-up budget, dozens of functions went to its optimising compiler on background threads (several of them
// again after a deoptimisation). A budget 4.4 times the default (67,584) optimises only what stays hot: about
// 15 % less CPU on the libcrypto pair, neutral on a 110 MB library (docs/PERFORMANCE.md). Set before the
// packer's modules load. It changes when code is compiled, never what it computes; a V8 that no longer knows
// the flag prints "unrecognized flag" on stderr and runs as before.
setFlagsFromString('--interrupt-budget=300000');

const { main } = await import('../packer/command.js');
await main(process.argv.slice(2));
