// js-hostile.v1: a specialist whose topic names the attack (tests only).
import { emit } from 'lily:runnable/events@0.1.1';
import { propose } from 'lily:runnable/effects@0.1.1';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import { getEnvironment } from 'wasi:cli/environment@0.2.12';
import { instanceNetwork } from 'wasi:sockets/instance-network@0.2.12';
import { resolveAddresses } from 'wasi:sockets/ip-name-lookup@0.2.12';
import { createTcpSocket } from 'wasi:sockets/tcp-create-socket@0.2.12';
import { handle } from 'wasi:http/outgoing-handler@0.2.12';
import { Fields, OutgoingRequest, OutgoingBody } from 'wasi:http/types@0.2.12';
import { bindHost, exportSpecialist, http, Specialist } from 'lily-guest';

bindHost({ emit, propose, preopens: { getDirectories }, http: { handle, Fields, OutgoingRequest, OutgoingBody } });

function attempt(what, f) {
  try {
    const r = f();
    return `${what}: ALLOWED ${String(r).slice(0, 200)}`;
  } catch (e) {
    return `${what}: refused ${String(e && e.payload !== undefined ? e.payload : e).slice(0, 200)}`;
  }
}

function finding(title, evidence) {
  return { findings: [{ title, recommendation: 'none', confidence: 0.5, evidence }], notes: 'js-hostile' };
}

class Hostile extends Specialist {
  static id = 'js-hostile.v1';
  static version = '0.1.0';
  static summary = 'hostile JS guest for the sandbox tests';

  review(input) {
    const op = input.topic.split(/\s+/)[0];
    const noFollow = { symlinkFollow: false };
    switch (op) {
      case 'throw':
        throw new Error('kaboom: the JS guest gave up');
      case 'fs': {
        const ev = [];
        const dirs = getDirectories();
        ev.push(`preopens: ${dirs.map(([, p]) => p).join(',')}`);
        for (const [d, p] of dirs) {
          for (const path of ['../outside/secret.txt', '../../../../etc/passwd', '/etc/passwd']) {
            ev.push(attempt(`${p} ${path}`, () => {
              const f = d.openAt(noFollow, path, {}, { read: true });
              return new TextDecoder().decode(f.read(4096n, 0n)[0]);
            }));
          }
          ev.push(attempt(`${p} write`, () => d.openAt(noFollow, 'planted.txt', { create: true }, { write: true })));
        }
        return finding('fs probe', ev);
      }
      case 'env':
        return finding('env probe', [`env: ${getEnvironment().map(([k, v]) => `${k}=${v}`).join(';')}`]);
      case 'socket': {
        const ev = [];
        ev.push(attempt('lookup', () => {
          const s = resolveAddresses(instanceNetwork(), 'localhost');
          return s.resolveNextAddress();
        }));
        ev.push(attempt('tcp', () => {
          const s = createTcpSocket('ipv4');
          s.startConnect(instanceNetwork(), { tag: 'ipv4', val: { port: 9, address: [127, 0, 0, 1] } });
          return s.finishConnect();
        }));
        return finding('socket probe', ev);
      }
      case 'http': {
        const url = input.topic.split(/\s+/)[1];
        try {
          const r = url.includes('/post') ? http.postJson(url, { from: 'js-hostile' }) : http.get(url);
          return finding('http probe', [`status ${r.status}: ${r.text()} (${r.header('x-test')})`]);
        } catch (e) {
          return finding('http probe', [e instanceof http.HttpError ? `refused: ${e.code}` : `threw: ${e}`]);
        }
      }
      case 'loop':
        for (;;) {
          // spin until fuel or the deadline stops us
        }
      case 'memory': {
        const hoard = [];
        for (;;) hoard.push(new Uint8Array(16 * 1024 * 1024).fill(1));
      }
      default:
        return finding('nothing', [op]);
    }
  }
}

export const { describe, run } = exportSpecialist(Hostile);
