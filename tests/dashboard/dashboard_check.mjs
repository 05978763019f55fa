// Drives sweepd's live dashboard in Debian's headless Chromium (never a downloaded browser)
// while a sweep runs; used by tests/dashboard/dashboard_browser_test.cc, which starts sweepd
// (--http-listen) with a submitted layer study and no workers yet.
//   Phase 1 (no workers): the sweep's row is running at 0 %, no worker rows, tasks pending.
//           Then writes MARKER, and the test starts two workers.
//   Phase 2 (while it runs): progress strictly between 0 and 100 %, two cpu workers with TP 1,
//           and the task filters (state, stage, intervention) narrow the rows as they should.
//   Phase 3 (done): the report's charts all drew (svg with marks), no page/console error, no
//           request left the dashboard's own host. Then a full-page screenshot.
// Exit 0 = all good, 1 = problems (on stderr), 2 = usage. The browser, its guards and the table
// readers are dashboard_driver.mjs's.
//   node dashboard_check.mjs URL SWEEP_ID MARKER SCREENSHOT.png
import fs from 'node:fs';

import { checkDoneAndEta, checkWorkerRows, rowOf as rowOfSweep, runInBrowser, waitFor,
         workerRows } from './dashboard_driver.mjs';

const [url, sweepId, marker, pngPath] = process.argv.slice(2);
if (!url || !sweepId || !marker || !pngPath) {
  console.error('usage: node dashboard_check.mjs URL SWEEP_ID MARKER SCREENSHOT.png');
  process.exit(2);
}
const log = (m) => console.log(`dashboard_check: ${m}`);

const rowOf = (page) => rowOfSweep(page, sweepId);

const taskRows = (page) => page.evaluate(() =>
  Array.from(document.querySelectorAll('#tasks-table tbody tr')).map((tr) => ({
    state: tr.dataset.state, stage: tr.dataset.stage, interventions: tr.cells[4].textContent })));

async function setFilter(page, id, value) {
  const before = await page.evaluate(() => window.__dashboard.polls);
  if (id === 'filter-intervention') await page.fill(`#${id}`, value);
  else await page.selectOption(`#${id}`, value);
  // The change reloads the tasks at once; wait for the next full poll to be sure.
  await waitFor(page, 'a poll after a filter change', (b) => window.__dashboard.polls > b, before, 10000);
}

await runInBrowser({
  name: 'dashboard_check', url, profilePrefix: 'sweepd-dashboard-', log,
  body: async (page, problems) => {
    await page.goto(`${url}#sweep=${sweepId}`, { waitUntil: 'load' });

    // ---- Phase 1: submitted, no workers.
    await waitFor(page, 'the sweep row', (id) =>
      !!document.querySelector(`#sweeps-table tr[data-sweep-id="${id}"]`), sweepId, 30000);
    let row = await rowOf(page);
    if (row.state !== 'running') problems.push(`phase 1: state ${row.state}, want running`);
    if (row.progress !== 0 || row.cells[3] !== '0%') {
      problems.push(`phase 1: progress ${row.progress} shown as '${row.cells[3]}', want 0 and '0%'`);
    }
    const workers0 = await page.locator('#workers-table tbody tr').count();
    if (workers0 !== 0) problems.push(`phase 1: ${workers0} worker rows, want 0`);
    await waitFor(page, 'task rows', () => document.querySelectorAll('#tasks-table tbody tr').length > 0,
                  null, 10000);
    const pending = await taskRows(page);
    if (!pending.every((t) => t.state === 'pending')) problems.push('phase 1: a task is not pending');
    log(`phase 1 ok: ${pending.length} pending tasks shown, no workers`);
    fs.writeFileSync(marker, 'phase 1 done\n');

    // ---- Phase 2: workers started by the test; the sweep runs.
    await waitFor(page, 'two worker rows', () =>
      document.querySelectorAll('#workers-table tbody tr').length === 2, null, 60000);
    await waitFor(page, 'some progress', (id) => {
      const tr = document.querySelector(`#sweeps-table tr[data-sweep-id="${id}"]`);
      return tr && Number(tr.dataset.progress) > 0;
    }, sweepId, 60000);
    row = await rowOf(page);
    if (row.state !== 'running' || !(row.progress > 0 && row.progress < 1)) {
      problems.push(`phase 2: state ${row.state} at ${row.progress}: the sweep was not seen running`);
    }
    checkDoneAndEta(row, 'phase 2', problems);
    // The sweep as it runs (taken before the filter checks, which take a few polls).
    await page.screenshot({ path: pngPath.replace(/\.png$/, '-running.png'), fullPage: true });
    const workers = await workerRows(page);
    checkWorkerRows(workers, 'phase 2', problems);
    await setFilter(page, 'filter-state', 'done');
    const done = await taskRows(page);
    if (done.length === 0 || !done.every((t) => t.state === 'done')) {
      problems.push(`phase 2: state filter 'done' shows ${JSON.stringify(done.map((t) => t.state))}`);
    }
    await setFilter(page, 'filter-state', '');
    await setFilter(page, 'filter-intervention', 'skip:2');
    const skip2 = await taskRows(page);
    if (skip2.length === 0 || !skip2.every((t) => t.interventions.includes('skip:2'))) {
      problems.push(`phase 2: intervention filter shows ${JSON.stringify(skip2.map((t) => t.interventions))}`);
    }
    await setFilter(page, 'filter-intervention', '');
    await setFilter(page, 'filter-stage', 'probe');
    const probe = await taskRows(page);
    if (probe.length === 0 || !probe.every((t) => t.stage === 'probe')) {
      problems.push(`phase 2: stage filter shows ${JSON.stringify(probe.map((t) => t.stage))}`);
    }
    await setFilter(page, 'filter-stage', '*');
    log(`phase 2 ok: running at ${(100 * row.progress).toFixed(0)}% (ETA ${row.cells[9]}), ${workers.length} workers, ${done.length} done rows`);

    // ---- Phase 3: done; the report drew.
    await waitFor(page, 'the sweep to finish', (id) => {
      const tr = document.querySelector(`#sweeps-table tr[data-sweep-id="${id}"]`);
      return tr && tr.dataset.state !== 'running';
    }, sweepId, 300000);
    row = await rowOf(page);
    if (row.state !== 'done') problems.push(`phase 3: sweep ended ${row.state}`);
    const charts = await waitFor(page, 'the final report to draw', () => {
      const D = window.__dashboard;
      const ids = Object.keys(D.charts);
      const settled = ids.length > 0 && ids.every((id) => D.charts[id] !== 'pending');
      const tr = document.querySelector('#sweeps-table tr.selected');
      return settled && tr && tr.dataset.state === 'done' &&
             D.reportVersion === Number(tr.dataset.version) && D.charts;
    }, null, 60000).then((h) => h.jsonValue());
    for (const [id, status] of Object.entries(charts)) {
      if (status !== 'ok') problems.push(`chart ${id}: ${status}`);
      const marks = await page.evaluate((cid) => {
        const svg = document.querySelector(`#${cid} svg`);
        return svg ? svg.querySelectorAll('path, rect, line, symbol, text').length : 0;
      }, id);
      if (marks < 5) problems.push(`chart ${id}: drew ${marks} marks`);
    }
    const ids = Object.keys(charts);
    if (ids.length < 3) problems.push(`only ${ids.length} report charts: ${ids.join(',')}`);
    await page.screenshot({ path: pngPath, fullPage: true });
    log(`phase 3 ok: ${ids.length} charts drawn (${ids.join(', ')})`);
  },
});
