// Deterministic walk of a read-only workspace grant (e.g. `/workspace`), the
// same rules as the Rust SDK's `workspace::walk`: sorted, depth first,
// symlinks not followed, SKIP_DIRS not entered, files over MAX_FILE_BYTES
// not read. Inside a component it uses the `wasi:filesystem` preopens bound
// by the entry module; under Node it uses node:fs.

import { host } from './host.js';

export const MAX_FILE_BYTES = 1024 * 1024;
export const SKIP_DIRS = ['.git', 'target', 'node_modules', '.lily', '.hg', '.svn'];
/** Most files visited in one walk (bounded work on guest-chosen data). */
export const MAX_FILES = 10000;

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decode(buf) {
  const head = buf.subarray(0, Math.min(buf.length, 8192));
  if (head.includes(0)) return null;
  try {
    return utf8.decode(buf);
  } catch (_) {
    return null;
  }
}

/** Node: a tiny adapter with the operations the walk needs. */
function nodeFs(root) {
  const fs = process.getBuiltinModule('node:fs');
  const path = process.getBuiltinModule('node:path');
  return {
    list(rel) {
      return fs.readdirSync(path.join(root, rel), { withFileTypes: true }).map((d) => ({
        name: d.name,
        type: d.isDirectory() ? 'directory' : d.isFile() ? 'regular-file' : 'other',
      }));
    },
    size: (rel) => fs.lstatSync(path.join(root, rel)).size,
    read: (rel) => new Uint8Array(fs.readFileSync(path.join(root, rel))),
  };
}

/** Component: the preopened directory whose guest path is `root`. */
function wasiFs(root, preopens) {
  const dir = preopens.getDirectories().find(([, p]) => p === root);
  if (!dir) return null;
  const base = dir[0];
  const noFollow = { symlinkFollow: false };
  const open = (rel) => (rel === '' ? base : base.openAt(noFollow, rel, {}, { read: true }));
  return {
    list(rel) {
      const d = open(rel);
      const stream = d.readDirectory();
      const out = [];
      for (;;) {
        const e = stream.readDirectoryEntry();
        if (!e) break;
        out.push({ name: e.name, type: e.type });
      }
      return out;
    },
    size: (rel) => Number(base.statAt(noFollow, rel).size),
    read(rel) {
      const f = open(rel);
      const chunks = [];
      let off = 0n;
      for (;;) {
        const [buf, eof] = f.read(65536n, off);
        chunks.push(buf);
        off += BigInt(buf.length);
        if (eof || buf.length === 0 || off > BigInt(MAX_FILE_BYTES)) break;
      }
      const all = new Uint8Array(Number(off));
      let at = 0;
      for (const c of chunks) {
        all.set(c, at);
        at += c.length;
      }
      return all;
    },
  };
}

/**
 * Visit every regular file under `root` in sorted order. `visit({rel, size,
 * text, binary, oversized})`; returns the walk's stats.
 */
export function walk(root, visit) {
  const h = host();
  const fsx = h && h.preopens ? wasiFs(root, h.preopens) : nodeFs(root);
  const stats = { files: 0, bytes: 0, skipped_large: 0, skipped_binary: 0, unreadable: 0 };
  if (!fsx) {
    stats.unreadable += 1;
    return stats;
  }
  const stack = [''];
  while (stack.length > 0 && stats.files < MAX_FILES) {
    const dir = stack.pop();
    let entries;
    try {
      entries = fsx.list(dir);
    } catch (_) {
      stats.unreadable += 1;
      continue;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const subdirs = [];
    for (const e of entries) {
      const rel = dir === '' ? e.name : `${dir}/${e.name}`;
      if (e.type === 'directory') {
        if (!SKIP_DIRS.includes(e.name)) subdirs.push(rel);
        continue;
      }
      if (e.type !== 'regular-file' || stats.files >= MAX_FILES) continue;
      stats.files += 1;
      let size;
      try {
        size = fsx.size(rel);
      } catch (_) {
        stats.unreadable += 1;
        continue;
      }
      if (size > MAX_FILE_BYTES) {
        stats.skipped_large += 1;
        visit({ rel, size, text: null, binary: false, oversized: true });
        continue;
      }
      let buf;
      try {
        buf = fsx.read(rel);
      } catch (_) {
        stats.unreadable += 1;
        continue;
      }
      stats.bytes += buf.length;
      const text = decode(buf);
      if (text === null) stats.skipped_binary += 1;
      visit({ rel, size, text, binary: text === null, oversized: false });
    }
    stack.push(...subdirs.reverse());
  }
  return stats;
}

export function describeStats(s) {
  return `workspace-analysis: ${s.files} files, ${s.bytes} bytes scanned; ${s.skipped_large} over ${MAX_FILE_BYTES} bytes and ${s.skipped_binary} binary skipped`;
}
