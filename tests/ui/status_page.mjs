// The admin status page in headless Chromium, against a running 3-instance cluster.
//
//   PAGE_URL=http://127.0.0.2:9901/ ADMINS='app-1=http://127.0.0.2:9901,app-2=...,app-3=...' \
//   OUT_DIR=tests/out node tests/ui/status_page.mjs
//
// Checks: the page loads with no request leaving the admin origin and no console error; it shows
// the three instances and exactly one primary (the one the lease names); after POST /handoff on
// that primary it shows another primary within HANDOFF_WAIT_MS, without a reload. Screenshots of
// both states go to OUT_DIR. Exit 0 on success, 1 on a failed check (the reason on stderr).
import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const pageUrl = process.env.PAGE_URL;
const admins = Object.fromEntries(
  (process.env.ADMINS || '').split(',').filter(Boolean).map((kv) => kv.split('=').map((s) => s.trim())),
);
const outDir = process.env.OUT_DIR || 'tests/out';
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const handoffWaitMs = Number(process.env.HANDOFF_WAIT_MS || 5000);
const ids = Object.keys(admins).sort();
if (!pageUrl || ids.length !== 3) {
  console.error('usage: PAGE_URL=... ADMINS=id=url,id=url,id=url node status_page.mjs');
  process.exit(2);
}

const t0 = Date.now();
const log = (msg) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${msg}`);
let failed = 0;
const check = (ok, what) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} - ${what}`);
  if (!ok) failed++;
  return ok;
};

// What the page shows: the rows of the instance table and the primary banner.
async function shown(page) {
  return page.evaluate(() => ({
    rows: [...document.querySelectorAll('#instances tr.instance')].map((tr) => ({
      id: tr.dataset.id,
      role: tr.dataset.role,
      cells: [...tr.children].map((td) => td.textContent.trim()),
    })),
    primary: document.getElementById('primary').dataset.primary,
    error: document.getElementById('err').style.display === 'block' ? document.getElementById('err').textContent : '',
    marker: window.__leaseway_test_marker || null,
  }));
}

// Poll fn(state) until it returns true or ms pass; returns the last state.
async function waitShown(page, ms, fn) {
  const end = Date.now() + ms;
  let s;
  for (;;) {
    s = await shown(page);
    if (fn(s) || Date.now() > end) return s;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const onlyPrimary = (s) => {
  const p = s.rows.filter((r) => r.role === 'primary');
  return p.length === 1 && s.primary === p[0].id ? p[0].id : null;
};

mkdirSync(outDir, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), 'leaseway-chromium-'));
// a fresh profile (--user-data-dir), removed at the end
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: chromiumPath,
  headless: true,
  viewport: { width: 1280, height: 720 },
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-dev-shm-usage',
  ],
});
try {
  const page = browser.pages()[0] || (await browser.newPage());
  const origin = new URL(pageUrl).origin;
  const foreign = [];
  const consoleErrors = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(origin + '/')) foreign.push(r.url());
  });
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));

  log(`opening ${pageUrl}`);
  const resp = await page.goto(pageUrl, { waitUntil: 'load' });
  check(resp && resp.status() === 200, `GET / answers 200 (${resp && resp.status()})`);
  check((resp.headers()['content-type'] || '').startsWith('text/html'), 'GET / is text/html');
  check(/default-src 'none'/.test(resp.headers()['content-security-policy'] || ''), 'GET / sends a CSP that forbids external assets');
  await page.evaluate(() => { window.__leaseway_test_marker = 'no-reload'; });

  let s = await waitShown(page, 15000, (x) => x.rows.length === 3 && onlyPrimary(x));
  check(s.rows.length === 3, `three instances shown: ${s.rows.map((r) => r.id).join(', ')}`);
  check(JSON.stringify(s.rows.map((r) => r.id).sort()) === JSON.stringify(ids), `they are ${ids.join(', ')}`);
  const before = onlyPrimary(s);
  check(before !== null, `exactly one primary, and the banner names it: ${before} (roles ${s.rows.map((r) => r.role).join(',')})`);
  for (const r of s.rows) {
    // columns: instance, region, address, role, gate, reason, checks, version
    check(r.cells[1] === 'local' && r.cells[4] === 'open' && r.cells[6] === 'passing' && /\d+\.\d+/.test(r.cells[7]),
      `${r.id}: region, gate, check and version shown (${r.cells.join(' | ')})`);
  }
  await page.screenshot({ path: join(outDir, 'status_page.png'), fullPage: true });
  log(`screenshot ${join(outDir, 'status_page.png')}`);
  if (!before) throw new Error('no single primary to hand off');

  log(`POST ${admins[before]}/handoff`);
  const tHandoff = Date.now();
  const hr = await fetch(`${admins[before]}/handoff`, { method: 'POST' });
  check(hr.status === 200, `POST /handoff on ${before}: ${hr.status} ${(await hr.text()).trim()}`);

  s = await waitShown(page, handoffWaitMs, (x) => x.rows.length === 3 && onlyPrimary(x) && onlyPrimary(x) !== before);
  const after = onlyPrimary(s);
  const took = Date.now() - tHandoff;
  check(after && after !== before, `the page shows the new primary ${after} (was ${before}) after ${took} ms, within ${handoffWaitMs} ms`);
  check(s.marker === 'no-reload', 'the page updated itself (no reload)');
  check(s.rows.length === 3, 'still three instances');
  await page.screenshot({ path: join(outDir, 'status_page_after_handoff.png'), fullPage: true });
  log(`screenshot ${join(outDir, 'status_page_after_handoff.png')}`);

  check(foreign.length === 0, `no request left the admin origin${foreign.length ? ': ' + foreign.join(' ') : ''}`);
  check(consoleErrors.length === 0, `no console errors${consoleErrors.length ? ': ' + consoleErrors.join(' | ') : ''}`);
  check(!s.error, `no error banner${s.error ? ': ' + s.error : ''}`);
} catch (e) {
  console.log(`FAIL - ${e.stack || e}`);
  failed++;
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(`status page: ${failed ? 'FAILED' : 'passed'} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
process.exit(failed ? 1 : 0);
