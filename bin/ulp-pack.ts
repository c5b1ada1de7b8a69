#!/usr/bin/env node
import { main } from '../packer/command.js';

await main(process.argv.slice(2));
