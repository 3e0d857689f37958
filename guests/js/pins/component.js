// Component entry: binds the host imports and exports describe/run.
import { emit } from 'lily:runnable/events@0.1.1';
import { propose } from 'lily:runnable/effects@0.1.1';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import { bindHost, exportSpecialist } from 'lily-guest';
import { Pins } from './src/pins.js';

bindHost({ emit, propose, preopens: { getDirectories } });
export const { describe, run } = exportSpecialist(Pins);
