// The shared driver of the dashboard browser checks (dashboard_check.mjs and
// dashboard_signin_check.mjs, both run by tests/dashboard/dashboard_browser_test.cc): Debian's
// headless Chromium (never a downloaded browser) through playwright-core from
// tests/client/report/node_modules (npm ci there) on a throwaway profile; page errors, console
// errors and any request outside the dashboard's own host recorded as problems; the readers of
// the sweeps and workers tables and the checks both scripts make on them; the exit protocol
// (0 = all good, 1 = problems on stderr).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', 'client', 'report', 'package.json'));
const { chromium } = require('playwright-core');

// page.waitForFunction with a readable error: "timed out waiting for WHAT".
export async function waitFor(page, what, fn, arg, timeoutMs, pollingMs = 200) {
  try {
    return await page.waitForFunction(fn, arg, { timeout: timeoutMs, polling: pollingMs });
  } catch (e) {
    throw new Error(`timed out waiting for ${what}`);
  }
}

// The sweep's row of #sweeps-table ({state, cells, progress, version}), or null.
export const rowOf = (page, sweepId) => page.evaluate((id) => {
  const tr = document.querySelector(`#sweeps-table tr[data-sweep-id="${id}"]`);
  if (!tr) return null;
  const cells = Array.from(tr.cells).map((c) => c.textContent.trim());
  return { state: tr.dataset.state, cells, progress: Number(tr.dataset.progress),
           version: Number(tr.dataset.version) };
}, sweepId);

// The running sweep's row shows "done/total" and an ETA.
export function checkDoneAndEta(row, phase, problems) {
  if (!/^\d+\/\d+$/.test(row.cells[4]) || !/^\d+(m\d\ds|s|h\d\dm)$|^–$/.test(row.cells[9])) {
    problems.push(`${phase}: done '${row.cells[4]}', ETA '${row.cells[9]}'`);
  }
}

// The cells of every #workers-table row.
export const workerRows = (page) => page.evaluate(() =>
  Array.from(document.querySelectorAll('#workers-table tbody tr'))
    .map((tr) => Array.from(tr.cells).map((c) => c.textContent.trim())));

// Every worker row: cpu, TP 1, a model, not draining, live.
export function checkWorkerRows(workers, phase, problems) {
  for (const w of workers) {
    if (w[1] !== 'cpu' || w[3] !== '1' || w[4] === '–' || w[7] !== 'no' || w[8] !== 'yes') {
      problems.push(`${phase}: worker row ${JSON.stringify(w)} (want cpu, TP 1, a model, not draining, live)`);
    }
  }
}

// Launches Chromium on a fresh profile (ignored console errors: `ignoreConsole(text)` true),
// guards requests to `url`'s origin, runs `body(page, problems)`, closes the browser and removes
// the profile; then prints each problem as "NAME: problem" (after `redact`) on stderr and exits
// 1, or logs 'all checks passed' with `log`.
export async function runInBrowser({ name, url, profilePrefix, extraArgs = [],
                                     ignoreConsole = () => false, redact = (p) => p, log, body }) {
  const executablePath = process.env.SWEEPD_CHROMIUM || '/usr/bin/chromium';
  const origin = new URL(url).origin;
  const problems = [];
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), profilePrefix));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath, headless: true, viewport: { width: 1280, height: 900 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync',
             ...extraArgs],
    });
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && !ignoreConsole(m.text())) {
        problems.push(`console error: ${m.text()}`);
      }
    });
    await page.route('**/*', (route) => {
      const u = route.request().url();
      if (!u.startsWith(origin) && !u.startsWith('data:')) {
        problems.push(`request outside the dashboard (no CDN allowed): ${u}`);
        return route.abort();
      }
      return route.continue();
    });
    await body(page, problems);
  } catch (e) {
    problems.push(String(e && e.stack ? e.stack : e));
  } finally {
    if (context) await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  if (problems.length) {
    for (const p of problems) console.error(`${name}: ${redact(p)}`);
    process.exit(1);
  }
  log('all checks passed');
}
