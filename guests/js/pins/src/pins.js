// pins.v1: reviews the npm manifests of a workspace. A dependency whose
// version is a range (`^1.2.0`, `~1`, `>=2`, `*`, `latest`, a branch) lets
// an install pick code nobody reviewed; a package.json without a lockfile
// next to it has no record of what was installed.
import { Specialist, emit } from 'lily-guest';
import { walk, describeStats } from 'lily-guest/workspace';

const SECTIONS = ['dependencies', 'devDependencies', 'optionalDependencies'];
const LOCKFILES = ['package-lock.json', 'npm-shrinkwrap.json', 'yarn.lock', 'pnpm-lock.yaml', 'bun.lockb'];
const EXACT = /^=?v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;
const MAX_EVIDENCE = 20;

/** Whether `spec` pins one version (exact semver, a file/link path, or a git commit). */
export function isPinned(spec) {
  const s = String(spec).trim();
  if (EXACT.test(s)) return true;
  if (/^(file|link|workspace):/.test(s)) return true;
  const hash = s.match(/#([0-9a-f]{7,40})$/);
  return Boolean(hash) && /^(git|github:|git\+|https?:)/.test(s);
}

/** Unpinned dependencies of one parsed manifest: `[name, spec]`. */
export function unpinned(manifest) {
  const out = [];
  for (const section of SECTIONS) {
    const deps = manifest && manifest[section];
    if (!deps || typeof deps !== 'object') continue;
    for (const name of Object.keys(deps).sort()) if (!isPinned(deps[name])) out.push([name, String(deps[name])]);
  }
  return out;
}

/** The findings for a set of files: `{rel: text}` (only package.json and lockfiles matter). */
export function review(files) {
  const loose = [];
  const noLock = [];
  const broken = [];
  const names = new Set(Object.keys(files));
  for (const rel of Object.keys(files).sort()) {
    const base = rel.split('/').pop();
    if (base !== 'package.json') continue;
    const dir = rel.slice(0, rel.length - base.length);
    let manifest;
    try {
      manifest = JSON.parse(files[rel]);
    } catch (e) {
      broken.push(`${rel}: ${e.message}`);
      continue;
    }
    for (const [name, spec] of unpinned(manifest)) loose.push(`${rel}: ${name}@${spec}`);
    const hasDeps = SECTIONS.some((s) => manifest && manifest[s] && Object.keys(manifest[s]).length > 0);
    if (hasDeps && !LOCKFILES.some((l) => names.has(dir + l))) noLock.push(rel);
  }
  const findings = [];
  if (loose.length > 0) {
    findings.push({
      title: 'Unpinned npm dependencies',
      recommendation: `Pin the ${loose.length} dependency version range(s) to exact versions (npm install --save-exact) and commit the lockfile.`,
      confidence: 0.7,
      evidence: cap(loose),
    });
  }
  if (noLock.length > 0) {
    findings.push({
      title: 'npm manifest without a lockfile',
      recommendation: 'Commit package-lock.json (npm install) next to each package.json so installs are reproducible.',
      confidence: 0.6,
      evidence: cap(noLock),
    });
  }
  if (broken.length > 0) {
    findings.push({ title: 'Unparsable package.json', recommendation: 'Fix the JSON syntax of these manifests.', confidence: 0.8, evidence: cap(broken) });
  }
  return { findings, manifests: Object.keys(files).filter((r) => r.split('/').pop() === 'package.json').length, unpinned: loose.length };
}

function cap(list) {
  return list.length > MAX_EVIDENCE ? [...list.slice(0, MAX_EVIDENCE), `… and ${list.length - MAX_EVIDENCE} more`] : list;
}

export class Pins extends Specialist {
  static id = 'pins.v1';
  static version = '0.1.0';
  static summary = 'npm dependencies not pinned to an exact version, and manifests without a lockfile';

  review(input) {
    if (input.workspace === null) {
      return {
        findings: [
          {
            title: 'Dependency pinning not checked',
            recommendation: `Grant pins.v1 the workspace to check the npm manifests of: ${input.topic}.`,
            confidence: 0.1,
            evidence: [],
          },
        ],
        notes: 'deterministic-default',
      };
    }
    const files = {};
    const stats = walk(input.workspace, (e) => {
      const base = e.rel.split('/').pop();
      if (base === 'package.json' && e.text !== null) files[e.rel] = e.text;
      else if (LOCKFILES.includes(base)) files[e.rel] = '';
    });
    const r = review(files);
    emit('info', 'manifests_checked', { manifests: r.manifests, unpinned: r.unpinned });
    return { findings: r.findings, notes: describeStats(stats) };
  }
}
