#!/usr/bin/env node
import { main } from '../trigger/command.js';

await main(process.argv.slice(2));
