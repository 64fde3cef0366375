// Drives the netdisk page in headless Chromium (Debian's, through
// playwright-core) against a running server. Started by tests/it/browser.rs
// with NETDISK_URL, NETDISK_USER, NETDISK_PASSWORD, NETDISK_ARTIFACTS and
// NETDISK_CHROMIUM; exits non-zero on the first failed check.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');

const URL = process.env.NETDISK_URL;
const USER = process.env.NETDISK_USER;
const PASSWORD = process.env.NETDISK_PASSWORD;
const OUT = process.env.NETDISK_ARTIFACTS;
/** A second server, without a quota (the same user on it). */
const URL_NO_QUOTA = process.env.NETDISK_URL_NO_QUOTA;
const MIB = 1024 * 1024;

const md5 = (b) => crypto.createHash('md5').update(b).digest('hex');
const bytes = (n, seed) => {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b[i] = x & 255;
  }
  return b;
};
const step = (what) => console.log('step: ' + what);

/** RFC 1321, appendix A.5. */
const VECTORS = {
  '': 'd41d8cd98f00b204e9800998ecf8427e',
  'a': '0cc175b9c0f1b6a831c399e269772661',
  'abc': '900150983cd24fb0d6963f7d28e17f72',
  'message digest': 'f96b697d7cb7938d525a2f31aaf161d0',
  'abcdefghijklmnopqrstuvwxyz': 'c3fcd3d76192e4007dfb496cca67e13b',
  'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789': 'd174ab98d277d9f5a5611c2c9f419d9f',
  '12345678901234567890123456789012345678901234567890123456789012345678901234567890': '57edf4a22be3c955ac49da2e2107b67a',
};

async function main() {
  // launch() starts Chromium on a fresh, empty profile of its own.
  const browser = await chromium.launch({
    executablePath: process.env.NETDISK_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    await run(browser);
  } finally {
    await browser.close();
  }
}

async function run(browser) {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1100, height: 800 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  const foreign = [];
  page.on('request', (r) => { if (!r.url().startsWith(URL)) foreign.push(r.url()); });

  step('the page loads under its CSP and its MD5 passes RFC 1321');
  const res = await page.goto(URL);
  assert.equal(res.status(), 200);
  assert.match(res.headers()['content-security-policy'], /default-src 'self'/);
  assert.equal(res.headers()['x-content-type-options'], 'nosniff');
  const got = await page.evaluate((v) => {
    const out = {};
    for (const k of Object.keys(v)) out[k] = window.NetdiskMD5.of(k);
    // Split updates across block edges must agree with one update.
    const data = new Uint8Array(1000).map((_, i) => (i * 7) & 255);
    const h = new window.NetdiskMD5();
    for (let i = 0; i < 1000; i += 37) h.update(data.subarray(i, Math.min(1000, i + 37)));
    out.split = h.hex() === window.NetdiskMD5.of(data);
    return out;
  }, VECTORS);
  for (const [k, d] of Object.entries(VECTORS)) assert.equal(got[k], d, 'MD5 of ' + JSON.stringify(k));
  assert.equal(got.split, true);

  step('a wrong password is refused, the right one signs in');
  await page.fill('#user', USER);
  await page.fill('#password', 'wrong password here');
  await page.click('#sign-in-button');
  await page.waitForSelector('#message:has-text("Wrong user name or password.")');
  assert.doesNotMatch(await page.textContent('#message'), /AUTH_FAILED/);

  step('repeated wrong logins are locked out, and the page says when to try again');
  // Another name: the lockout is per name and address, so USER still signs in.
  await page.fill('#user', 'mallory');
  const clear = () => page.evaluate(() => { document.getElementById('message').textContent = ''; });
  for (let i = 0; i < 5; i++) {
    await clear();
    await page.fill('#password', 'wrong password ' + i);
    await page.click('#sign-in-button');
    await page.waitForSelector('#message:has-text("Wrong user name or password.")');
  }
  await clear();
  await page.fill('#password', 'wrong password again');
  await page.click('#sign-in-button');
  await page.waitForSelector('#message:has-text("try again in")');
  const locked = await page.textContent('#message');
  assert.match(locked, /^Too many failed logins; try again in \d+ s\.$/);

  await page.fill('#user', USER);
  await page.fill('#password', PASSWORD);
  await page.press('#password', 'Enter');
  await page.waitForSelector('#disk', { state: 'visible' });
  assert.equal(await page.textContent('#user-name'), USER);
  // A quota: the bar shows how full it is.
  assert.equal(await page.isVisible('#usage-bar'), true);

  step('two files, one with a Chinese name, upload and list with their MD5');
  const small = [
    { name: 'hello.txt', mimeType: 'text/plain', buffer: Buffer.from('hello, netdisk\n') },
    { name: '报告 2026 😀.txt', mimeType: 'text/plain', buffer: bytes(300 * 1024, 7) },
  ];
  await page.setInputFiles('#picker', small);
  for (const f of small) {
    const row = page.locator('#files tbody tr', { has: page.locator('td.name', { hasText: f.name }) });
    await row.waitFor();
    assert.equal(await row.locator('td.md5').textContent(), md5(f.buffer), f.name);
  }
  assert.equal(await page.locator('#uploads li.done').count(), 2);

  step('a file dropped on the page uploads too');
  await page.evaluate(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(['dropped, not picked\n'], 'dropped 拖放.txt', { type: 'text/plain' }));
    document.getElementById('drop').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  });
  const dropped = page.locator('#files tbody tr[data-name="dropped 拖放.txt"]');
  await dropped.waitFor();
  assert.equal(await dropped.locator('td.md5').textContent(), md5(Buffer.from('dropped, not picked\n')));

  step('an upload interrupted by a reload resumes at the server\'s offset');
  const big = { name: 'big 大文件.bin', mimeType: 'application/octet-stream', buffer: bytes(20 * MIB, 11) };
  // The MD5 is computed in a Web Worker, off the page's thread.
  const workers = [];
  page.on('worker', (w) => workers.push(w.url()));
  let puts = 0;
  let held = null;
  const heldRequest = new Promise((resolve) => {
    page.route('**/api/uploads/**', (route) => {
      if (route.request().method() !== 'PUT') return route.continue();
      puts += 1;
      if (puts === 1) return route.continue();
      held = route;
      resolve();
    });
  });
  await page.setInputFiles('#picker', [big]);
  await heldRequest;
  const li = page.locator('#uploads li', { hasText: big.name });
  await page.waitForFunction(() => {
    const p = document.querySelector('#uploads li:last-child progress');
    return p && p.value >= 8 * 1024 * 1024;
  });
  await page.screenshot({ path: path.join(OUT, 'upload-in-progress.png'), fullPage: true });
  assert.match(await li.locator('.status').textContent(), /8\.00 MiB of 20\.0 MiB/);
  // The second piece never reaches the server: it holds the first.
  await held.abort();
  await page.unroute('**/api/uploads/**');
  await page.reload();
  await page.waitForSelector('#disk', { state: 'visible' });
  const resumedAt = [];
  page.on('request', (r) => {
    if (r.method() === 'PUT' && r.url().includes('/api/uploads/')) {
      resumedAt.push(Number(new globalThis.URL(r.url()).searchParams.get('offset')));
    }
  });
  await page.setInputFiles('#picker', [big]);
  const bigRow = page.locator('#files tbody tr', { has: page.locator('td.name', { hasText: big.name }) });
  await bigRow.waitFor({ timeout: 60000 });
  assert.equal(resumedAt[0], 8 * MIB, 'the first piece after the reload starts at the server\'s offset');
  const done = page.locator('#uploads li.done', { hasText: big.name });
  assert.equal(await done.getAttribute('data-resumed'), String(8 * MIB));
  assert.match(await done.locator('.status').textContent(), /resumed at 8\.00 MiB/);
  assert.equal(await bigRow.locator('td.md5').textContent(), md5(big.buffer));
  assert.ok(workers.some((u) => u.endsWith('/hash.js')), 'hashed in a worker: ' + workers.join(', '));

  step('a download brings back the same bytes under the UTF-8 name');
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.click('a[aria-label="Download ' + small[1].name + '"]'),
  ]);
  assert.equal(download.suggestedFilename(), small[1].name);
  const saved = path.join(OUT, 'downloaded.bin');
  await download.saveAs(saved);
  assert.ok(fs.readFileSync(saved).equals(small[1].buffer), 'downloaded bytes differ');

  step('the filter and the sort');
  await page.fill('#filter', '报告');
  assert.equal(await page.locator('#files tbody tr').count(), 1);
  assert.match(await page.textContent('#count'), /1 of 4 shown/);
  await page.fill('#filter', '');
  await page.click('th button[data-sort="size"]');
  await page.click('th button[data-sort="size"]');
  assert.equal(await page.locator('#files tbody tr').first().getAttribute('data-name'), big.name);

  step('rename inline, by keyboard');
  await page.click('button[aria-label="Rename hello.txt"]');
  await page.fill('input.rename-input', '你好 renamed.txt');
  await page.press('input.rename-input', 'Enter');
  await page.locator('#files tbody tr[data-name="你好 renamed.txt"]').waitFor();
  assert.equal(await page.locator('#files tbody tr[data-name="hello.txt"]').count(), 0);

  step('delete after a confirmation');
  let asked = '';
  page.once('dialog', (d) => { asked = d.message(); d.accept(); });
  await page.click('button[aria-label="Delete 你好 renamed.txt"]');
  await page.locator('#files tbody tr[data-name="你好 renamed.txt"]').waitFor({ state: 'detached' });
  assert.match(asked, /Delete 你好 renamed\.txt\?/);

  step('a folder is made, opened by keyboard, and the breadcrumbs follow');
  const album = '相册 photos';
  await page.fill('#new-folder', album);
  await page.press('#new-folder', 'Enter');
  const albumRow = page.locator(`#files tbody tr[data-kind="folder"][data-name="${album}"]`);
  await albumRow.waitFor();
  await page.focus(`button[aria-label="Open folder ${album}"]`);
  await page.keyboard.press('Enter');
  await page.waitForSelector(`#crumbs [aria-current="page"]:has-text("${album}")`);
  await page.waitForSelector('#empty', { state: 'visible' });
  assert.equal(await page.textContent('#drop-target'), album);
  assert.equal(new globalThis.URL(page.url()).hash, '#/' + encodeURIComponent(album));

  step('a folder picked with the folder picker uploads into the current folder');
  const local = fs.mkdtempSync(path.join(OUT, 'pick-'));
  fs.mkdirSync(path.join(local, 'pick', 'sub'), { recursive: true });
  fs.writeFileSync(path.join(local, 'pick', 'a.txt'), 'picked a\n');
  fs.writeFileSync(path.join(local, 'pick', 'sub', 'b.txt'), 'picked b\n');
  await page.setInputFiles('#folder-picker', path.join(local, 'pick'));
  await page.locator('#uploads li.done', { hasText: album + '/pick/sub/b.txt' }).waitFor();
  await page.locator('#uploads li.done', { hasText: album + '/pick/a.txt' }).waitFor();
  await page.locator('#files tbody tr[data-kind="folder"][data-name="pick"]').waitFor();
  await page.click('button[aria-label="Open folder pick"]');
  await page.locator('#files tbody tr[data-kind="folder"][data-name="sub"]').waitFor();
  assert.equal(await page.locator('#files tbody tr[data-name="a.txt"] td.md5').textContent(), md5(Buffer.from('picked a\n')));
  const crumbs = await page.locator('#crumbs li').allTextContents();
  assert.deepEqual(crumbs, ['Home', album, 'pick']);

  step('a folder dropped on the page uploads whole, its empty folder too');
  await page.click(`#crumbs button[aria-label="Open folder ${album}"]`);
  await page.waitForSelector(`#crumbs [aria-current="page"]:has-text("${album}")`);
  await page.evaluate(() => {
    // What Chromium's File System API gives for a dropped folder: entries
    // read in batches until an empty one.
    const file = (name, text) => ({ isFile: true, isDirectory: false, name, file: (ok) => ok(new File([text], name)) });
    const dir = (name, children) => ({
      isFile: false, isDirectory: true, name,
      createReader() {
        const batches = [children.slice(0, 2), children.slice(2), []];
        return { readEntries: (ok) => setTimeout(() => ok(batches.shift() || []), 0) };
      },
    });
    const tree = dir('dropped 文件夹', [
      file('one.txt', 'one\n'),
      dir('empty', []),
      dir('deeper', [file('two 😀.txt', 'two\n')]),
      file('.DS_Store', 'hidden'),
    ]);
    const dt = new DataTransfer();
    dt.items.add(new File(['placeholder'], 'dropped 文件夹'));
    const original = DataTransferItem.prototype.webkitGetAsEntry;
    DataTransferItem.prototype.webkitGetAsEntry = function () { return tree; };
    try {
      document.querySelector('#files').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    } finally {
      DataTransferItem.prototype.webkitGetAsEntry = original;
    }
  });
  const droppedDir = `${album}/dropped 文件夹`;
  await page.locator('#uploads li.done', { hasText: droppedDir + '/deeper/two 😀.txt' }).waitFor();
  await page.locator('#uploads li.done', { hasText: droppedDir + '/one.txt' }).waitFor();
  await page.waitForSelector('#message:has-text("Left out 1 hidden file")');
  await page.click('button[aria-label="Open folder dropped 文件夹"]');
  await page.locator('#files tbody tr[data-kind="folder"][data-name="empty"]').waitFor();
  await page.locator('#files tbody tr[data-kind="folder"][data-name="deeper"]').waitFor();
  await page.locator('#files tbody tr[data-kind="file"][data-name="one.txt"]').waitFor();
  assert.equal(await page.locator('#files tbody tr[data-name=".DS_Store"]').count(), 0);
  await page.screenshot({ path: path.join(OUT, 'folders.png'), fullPage: true });

  step('a file moves to another folder');
  await page.click('button[aria-label="Move one.txt"]');
  await page.waitForSelector('#move-form', { state: 'visible' });
  assert.equal(await page.textContent('#move-label'), 'Move one.txt to');
  const options = await page.locator('#move-target option').evaluateAll((os) => os.map((o) => o.value));
  assert.ok(options.includes(''), 'Home is a target');
  assert.ok(!options.includes(droppedDir), 'not where it is already');
  await page.selectOption('#move-target', `${album}/pick/sub`);
  await page.click('#move-button');
  await page.locator('#files tbody tr[data-name="one.txt"]').waitFor({ state: 'detached' });
  await page.waitForSelector('#message:has-text("Moved")');
  await page.goBack();
  await page.waitForSelector(`#crumbs [aria-current="page"]:has-text("${album}")`);
  await page.click('button[aria-label="Open folder pick"]');
  await page.click('button[aria-label="Open folder sub"]');
  await page.locator('#files tbody tr[data-name="one.txt"]').waitFor();

  step('a folder is deleted after a confirmation that says how many files go');
  await page.click(`#crumbs button[aria-label="Open folder ${album}"]`);
  let warned = '';
  page.once('dialog', (d) => { warned = d.message(); d.accept(); });
  await page.click('button[aria-label="Delete folder dropped 文件夹"]');
  await page.locator('#files tbody tr[data-name="dropped 文件夹"]').waitFor({ state: 'detached' });
  assert.match(warned, /Delete the folder 相册 photos\/dropped 文件夹\? 1 file \(4 B\) in 2 folders will be deleted with it\./);
  await page.click('#crumbs button[aria-label="Open Home"]');
  await page.waitForSelector('#crumbs [aria-current="page"]:has-text("Home")');

  step('a quota error is shown');
  await page.setInputFiles('#picker', [{ name: 'too big.bin', mimeType: 'application/octet-stream', buffer: bytes(8 * MIB, 3) }]);
  await page.locator('#uploads li.failed', { hasText: 'too big.bin' }).waitFor();
  // In words, with the figures: 8 MiB asked, 24 MiB of quota.
  const quotaSaid = await page.textContent('#message');
  assert.match(quotaSaid, /Quota exceeded: needs 8\.0 MiB, .+ left of 24\.0 MiB\./);
  assert.doesNotMatch(quotaSaid, /QUOTA_EXCEEDED/);
  assert.equal(await page.locator('#files tbody tr[data-name="too big.bin"]').count(), 0);

  step('screenshots of the list, wide and phone-width');
  await page.screenshot({ path: path.join(OUT, 'list.png'), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: path.join(OUT, 'list-phone.png'), fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, 'the page is wider than a phone by ' + overflow + ' px');
  await page.setViewportSize({ width: 1100, height: 800 });

  step('sign out ends the session');
  await page.click('#sign-out');
  await page.waitForSelector('#sign-in', { state: 'visible' });
  const after = await page.evaluate(async () => (await fetch('/api/files')).status);
  assert.equal(after, 401);

  step('without a quota there is no bar to fill, and one file is "1 file"');
  if (URL_NO_QUOTA) {
    const other = await browser.newContext();
    const p2 = await other.newPage();
    await p2.goto(URL_NO_QUOTA);
    await p2.fill('#user', USER);
    await p2.fill('#password', PASSWORD);
    await p2.press('#password', 'Enter');
    await p2.waitForSelector('#disk', { state: 'visible' });
    await p2.setInputFiles('#picker', [{ name: 'one.txt', mimeType: 'text/plain', buffer: Buffer.from('one\n') }]);
    await p2.locator('#files tbody tr[data-name="one.txt"]').waitFor();
    await p2.waitForSelector('#usage-text:has-text("1 file")');
    assert.match(await p2.textContent('#usage-text'), /^4 B used in 1 file, no quota/);
    assert.equal(await p2.isVisible('#usage-bar'), false);
    await other.close();
  }

  assert.deepEqual(foreign, [], 'requests to other origins');
  assert.deepEqual(errors.filter((e) => !/401|Failed to load resource/.test(e)), [], 'page errors');
  console.log('browser: all checks passed');
}

main().catch((e) => {
  console.error(e && e.stack || e);
  process.exit(1);
});
