// `just bench-browser`: a web upload in headless Chromium against the
// CLI's `put` of the same file, in the same run, over HTTPS on loopback.
// Starts the release server on a temp data dir (NETDISK_BIN, default
// target/release/netdisk), registers a user, uploads SIZE_MIB (default
// 1024) through the page, then `netdisk put` of the same file with TLS,
// and prints both rates and their ratio (target: the page at least 0.5x).
'use strict';

const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { chromium } = require('playwright-core');

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = process.env.NETDISK_BIN || path.join(ROOT, 'target/release/netdisk');
const MIB = 1024 * 1024;
const SIZE = Number(process.env.SIZE_MIB || 1024) * MIB;
const PASSWORD = 'bench passphrase';

/** The server on 127.0.0.1:0; resolves with its address and fingerprint. */
function serve(data) {
  const child = spawn(BIN, ['serve', '--addr', '127.0.0.1:0', '--data', data], { stdio: ['ignore', 'pipe', 'pipe'] });
  let fingerprint = null;
  readline.createInterface({ input: child.stderr }).on('line', (l) => {
    const m = l.match(/tls fingerprint (sha256:[0-9a-f]+)/);
    if (m) fingerprint = m[1];
  });
  return new Promise((resolve, reject) => {
    readline.createInterface({ input: child.stdout }).once('line', (l) => {
      const m = l.match(/^listening on (.+)$/);
      if (!m) return reject(new Error('server said ' + l));
      resolve({ child, addr: m[1], fingerprint: () => fingerprint });
    });
    child.once('exit', (c) => reject(new Error('server exited ' + c)));
  });
}

async function main() {
  const work = fs.mkdtempSync(path.join(process.env.TMPDIR || os.tmpdir(), 'netdisk-browser-bench-'));
  const file = path.join(work, 'big.bin');
  // Random bytes, written once (untimed).
  const fd = fs.openSync(file, 'w');
  const block = require('node:crypto').randomBytes(8 * MIB);
  for (let done = 0; done < SIZE; done += block.length) fs.writeSync(fd, block, 0, Math.min(block.length, SIZE - done));
  fs.closeSync(fd);
  const server = await serve(path.join(work, 'data'));
  const env = { ...process.env, NETDISK_SERVER: server.addr, NETDISK_USER: 'bench', NETDISK_PASSWORD: PASSWORD,
    XDG_CONFIG_HOME: path.join(work, 'config'), XDG_STATE_HOME: path.join(work, 'state') };
  try {
    execFileSync(BIN, ['register'], { env });
    const browser = await chromium.launch({
      executablePath: process.env.NETDISK_CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    });
    let pageSecs;
    let longTasks;
    try {
      const context = await browser.newContext({ ignoreHTTPSErrors: true });
      const page = await context.newPage();
      await page.goto('https://' + server.addr + '/');
      await page.fill('#user', 'bench');
      await page.fill('#password', PASSWORD);
      await page.click('#sign-in-button');
      await page.waitForSelector('#disk', { state: 'visible' });
      // Chromium's long-task timeline: every task on the page's main
      // thread over 50 ms, from here on.
      await page.evaluate(() => {
        window.longTasks = [];
        new PerformanceObserver((list) => {
          for (const e of list.getEntries()) window.longTasks.push(e.duration);
        }).observe({ type: 'longtask' });
      });
      const start = Date.now();
      await page.setInputFiles('#picker', file);
      await page.locator('#uploads li.done').waitFor({ timeout: 600000 });
      pageSecs = (Date.now() - start) / 1000;
      longTasks = await page.evaluate(() => window.longTasks);
    } finally {
      await browser.close();
    }
    const tls = ['--tls', '--trust', server.fingerprint()];
    const start = Date.now();
    execFileSync(BIN, [...tls, 'put', file, '--as', 'cli.bin'], { env, stdio: 'ignore' });
    const cliSecs = (Date.now() - start) / 1000;
    // Both arrived whole: the same MD5 on the server.
    const listed = JSON.parse(execFileSync(BIN, [...tls, 'ls', '--json'], { env }));
    const files = listed.files || listed;
    const md5s = files.filter((f) => f.name === 'big.bin' || f.name === 'cli.bin').map((f) => f.md5);
    assert.equal(md5s.length, 2, JSON.stringify(listed));
    assert.equal(md5s[0], md5s[1], 'the page and the CLI stored the same bytes');
    const rate = (s) => (SIZE / MIB / s).toFixed(1) + ' MiB/s';
    const ratio = cliSecs / pageSecs;
    console.log(`page upload over HTTPS, ${SIZE / MIB} MiB: ${pageSecs.toFixed(2)} s, ${rate(pageSecs)}`);
    console.log(`netdisk put --tls, same file:      ${cliSecs.toFixed(2)} s, ${rate(cliSecs)}`);
    console.log(`page / CLI: ${ratio.toFixed(2)} x (target >= 0.5): ${ratio >= 0.5 ? 'met' : 'NOT met'}`);
    const longest = Math.max(0, ...longTasks);
    console.log(`page tasks over 50 ms during the upload: ${longTasks.length}, longest ${longest.toFixed(0)} ms ` +
      `(target: none over 100 ms): ${longest <= 100 ? 'met' : 'NOT met'}`);
  } finally {
    server.child.kill('SIGTERM');
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e && e.stack || e);
  process.exit(1);
});
