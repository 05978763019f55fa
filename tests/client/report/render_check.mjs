// Opens a sweepd report.html in Debian's headless Chromium (never a downloaded browser), with
// the network off, waits until every Vega-Lite chart has settled, and checks that
//   - window.__sweepdCharts reports "ok" for exactly the expected chart ids,
//   - every chart div holds a drawn <svg> or <canvas> of non-trivial size with marks in it,
//   - no page error, console error or warning, or network request happened;
// then saves a full-page screenshot. Exit code 0 = all good, 1 = a problem (listed on stderr),
// 2 = bad usage. Used by tests/client/report/report_render_test.cc.
//
//   node render_check.mjs REPORT.html SCREENSHOT.png chart-a,chart-b,...
// Environment: SWEEPD_CHROMIUM overrides /usr/bin/chromium.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

const [htmlPath, pngPath, idsCsv] = process.argv.slice(2);
if (!htmlPath || !pngPath || idsCsv === undefined) {
  console.error('usage: node render_check.mjs REPORT.html SCREENSHOT.png id1,id2,...');
  process.exit(2);
}
const executablePath = process.env.SWEEPD_CHROMIUM || '/usr/bin/chromium';
const expectedIds = idsCsv.split(',').filter((id) => id.length > 0);
const kSettleTimeoutMs = 60000;

const problems = [];
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sweepd-chromium-'));
let context;
let chartReport = {};
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    offline: true,
    viewport: { width: 1100, height: 900 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // Vega and Vega-Lite report dropped data and bad encodings as warnings: a report that
    // draws everything it has must not cause any.
    if (m.type() === 'error' || m.type() === 'warning') {
      problems.push(`console ${m.type()}: ${m.text()}`);
    }
  });
  page.on('request', (r) => {
    if (!r.url().startsWith('file:') && !r.url().startsWith('data:')) {
      problems.push(`network request (the report must be self-contained): ${r.url()}`);
    }
  });
  await page.goto(pathToFileURL(path.resolve(htmlPath)).href, { waitUntil: 'load' });
  const status = await page.evaluate(async (timeoutMs) => {
    if (!window.__sweepdChartsDone) return null;
    const timeout = new Promise((resolve) => setTimeout(() => resolve('timeout'), timeoutMs));
    const settled = await Promise.race([window.__sweepdChartsDone, timeout]);
    return settled === 'timeout' ? { __timeout: JSON.stringify(window.__sweepdCharts) } : settled;
  }, kSettleTimeoutMs);
  if (status === null) {
    problems.push('window.__sweepdChartsDone is missing: the chart driver did not run');
  } else if (status.__timeout) {
    problems.push(`charts did not settle within ${kSettleTimeoutMs} ms: ${status.__timeout}`);
  } else {
    for (const id of expectedIds) {
      if (status[id] !== 'ok') problems.push(`chart ${id}: status ${JSON.stringify(status[id])}`);
    }
    for (const id of Object.keys(status)) {
      if (!expectedIds.includes(id)) problems.push(`chart ${id} drawn but not expected`);
    }
  }
  for (const id of expectedIds) {
    const info = await page.evaluate((chartId) => {
      const div = document.getElementById(chartId);
      if (!div) return null;
      const drawn = div.querySelector('svg, canvas');
      const box = drawn ? drawn.getBoundingClientRect() : { width: 0, height: 0 };
      return {
        svg: div.querySelectorAll('svg').length,
        canvas: div.querySelectorAll('canvas').length,
        // Items of data marks (bars, points, lines, rules), not frames, axes or legends.
        marks: div.querySelectorAll('svg g.role-mark:not(.mark-group) > *').length,
        width: Math.round(box.width),
        height: Math.round(box.height),
      };
    }, id);
    chartReport[id] = info;
    if (!info) {
      problems.push(`chart ${id}: no element with this id`);
    } else if (info.svg + info.canvas === 0) {
      problems.push(`chart ${id}: no svg or canvas inside`);
    } else if (info.width < 50 || info.height < 50) {
      problems.push(`chart ${id}: drawn area only ${info.width}x${info.height}`);
    } else if (info.svg > 0 && info.marks === 0) {
      problems.push(`chart ${id}: svg has no data marks (nothing drawn)`);
    }
  }
  const pageErrors = await page.evaluate(() => window.__sweepdErrors || []);
  for (const e of pageErrors) problems.push(`window error: ${e}`);
  fs.mkdirSync(path.dirname(path.resolve(pngPath)), { recursive: true });
  await page.screenshot({ path: pngPath, fullPage: true });
} catch (e) {
  problems.push(`render check failed: ${e && e.stack ? e.stack : e}`);
} finally {
  if (context) await context.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
console.log(JSON.stringify({ charts: chartReport, problems }, null, 1));
if (problems.length > 0) {
  for (const p of problems) console.error(`PROBLEM: ${p}`);
  process.exit(1);
}
process.exit(0);
