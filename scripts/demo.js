#!/usr/bin/env node
// A real share-and-sync demo on a private two-host network:
//   namespace A (share) <-- veth --> namespace B (sync)
// Nothing is created in the machine's own network namespace, so nothing reaches
// a real interface. Needs root (network namespaces, and CAP_NET_RAW for MLD).
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, writeFileSync, symlinkSync, rmSync, readFileSync, readdirSync, lstatSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'bin', 'run.js');

if (process.getuid?.() !== 0) {
  console.error('demo: needs root: it creates two network namespaces joined by a veth pair (ip netns add), and the share needs CAP_NET_RAW to watch MLD. Run it as root (sudo npm run demo).');
  process.exit(1);
}
for (const tool of ['ip']) {
  if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) {
    console.error(`demo: needs the '${tool}' command (Debian package iproute2)`);
    process.exit(1);
  }
}

const tag = `lcdemo${process.pid.toString(36)}`;
const nsA = `${tag}a`;
const nsB = `${tag}b`;
const work = mkdtempSync(path.join(tmpdir(), 'lcsync-demo-'));
const children = [];

function sh(cmd) {
  const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr.trim()}`);
  return r.stdout;
}

function cleanup() {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  spawnSync('ip', ['netns', 'del', nsA]);
  spawnSync('ip', ['netns', 'del', nsB]);
  rmSync(work, { recursive: true, force: true });
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

/** Start `lcsync share` on host A; `firstLine` resolves with its `<root hash>  <name>` line. */
function startShare(dir) {
  const proc = spawn('ip', ['netns', 'exec', nsA, process.execPath, cli, 'share', '-i', 'e0', '--no-cache', dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(proc);
  const firstLine = new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error('share did not print its root hash within 30 s')), 30000);
    proc.stdout.on('data', (d) => {
      buf += d;
      if (buf.includes('\n')) {
        clearTimeout(t);
        resolve(buf.split('\n')[0]);
      }
    });
    proc.on('exit', (code) => reject(new Error(`share exited with ${code}`)));
  });
  return { proc, firstLine };
}

function fileHash(p) {
  return createHash('sha256').update(readFileSync(p)).digest('hex');
}

function listTree(dir, rel = '') {
  const out = [];
  for (const name of readdirSync(path.join(dir, rel)).sort()) {
    const r = path.join(rel, name);
    const st = lstatSync(path.join(dir, r));
    out.push(`${r} ${st.mode.toString(8)} ${st.isFile() ? fileHash(path.join(dir, r)) : ''}`);
    if (st.isDirectory()) out.push(...listTree(dir, r));
  }
  return out;
}

try {
  console.log('== building a two-host lab network');
  sh(`ip netns add ${nsA} && ip netns add ${nsB}`);
  sh(`ip link add e0 netns ${nsA} type veth peer name e0 netns ${nsB}`);
  for (const ns of [nsA, nsB]) sh(`ip -n ${ns} link set lo up && ip -n ${ns} link set e0 up`);
  // Wait for link-local addresses (MLD reports are sent from them).
  for (let i = 0; i < 50; i++) {
    const ready = [nsA, nsB].every((ns) => /fe80::/.test(sh(`ip -n ${ns} -6 addr show dev e0`)) && !/tentative/.test(sh(`ip -n ${ns} -6 addr show dev e0`)));
    if (ready) break;
    await new Promise((r) => setTimeout(r, 100));
  }

  console.log('== generating sample data');
  const src = path.join(work, 'sample');
  mkdirSync(path.join(src, 'docs', 'deep'), { recursive: true });
  writeFileSync(path.join(src, 'big.bin'), randomBytes(8 * 1024 * 1024 + 12345));
  writeFileSync(path.join(src, 'docs', 'readme.txt'), 'lcsync demo: synced over IPv6 multicast\n');
  writeFileSync(path.join(src, 'docs', 'deep', 'small.bin'), randomBytes(40000));
  writeFileSync(path.join(src, 'empty'), '');
  symlinkSync('docs/readme.txt', path.join(src, 'link'));
  const dest = path.join(work, 'received');
  mkdirSync(dest);

  console.log(`== host A: lcsync share ${src}`);
  let share = startShare(src);
  const firstLine = await share.firstLine;
  console.log(`   ${firstLine}`);
  const [rootHash] = firstLine.split(/\s+/);

  console.log(`== host B: lcsync sync -a ${rootHash.slice(0, 16)}... ${dest}`);
  const sync = spawnSync('ip', ['netns', 'exec', nsB, process.execPath, cli, 'sync', '-a', '-v', '-i', 'e0', '--timeout', '20', rootHash, dest], { stdio: 'inherit', timeout: 120000 });
  if (sync.status !== 0) throw new Error(`sync exited with ${sync.status}`);

  console.log('== verifying');
  const a = listTree(src).join('\n');
  const b = listTree(dest).join('\n');
  if (a !== b) throw new Error(`trees differ:\n${a}\n--\n${b}`);
  const again = spawnSync(process.execPath, [cli, 'index', dest], { encoding: 'utf8' });
  const destHash = again.stdout.split(/\s+/)[0];
  if (destHash !== rootHash) throw new Error(`root hash of the copy ${destHash} != ${rootHash}`);
  console.log(`   identical: every file, mode and time; root hash ${destHash}`);

  console.log('== change 8 bytes in big.bin and sync again: one chunk travels');
  const fd = readFileSync(path.join(src, 'big.bin'));
  fd.write('CHANGED!', 4 * 1024 * 1024);
  writeFileSync(path.join(src, 'big.bin'), fd);
  share.proc.kill('SIGTERM');
  await new Promise((r) => share.proc.on('exit', r));
  share = startShare(src);
  const line2 = await share.firstLine;
  const hash2 = line2.split(/\s+/)[0];
  const sync2 = spawnSync('ip', ['netns', 'exec', nsB, process.execPath, cli, 'sync', '-a', '-i', 'e0', '--timeout', '20', hash2, dest], { stdio: 'inherit', timeout: 120000 });
  if (sync2.status !== 0) throw new Error(`second sync exited with ${sync2.status}`);
  share.proc.kill('SIGTERM');
  await new Promise((r) => share.proc.on('exit', r));
  console.log('== demo passed; removing the lab');
} catch (e) {
  console.error(`demo failed: ${e.message}`);
  process.exitCode = 1;
}
