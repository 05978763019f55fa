// Drives sweepd's dashboard as deployed — HTTPS with a test CA's certificate, sweepd with a token
// file — in Debian's headless Chromium, through its sign-in form; used by
// tests/dashboard/dashboard_browser_test.cc (SignsInOverHttpsAndWatchesARunningSweep), which
// starts sweepd with a submitted layer study and no workers yet.
//   Phase 1 (no token): the page shows the sign-in form and no sweep data; every API call the
//           page made, and each data path fetched without a token, answered 401. Then writes
//           MARKER, and the test starts two workers (they load the model while phase 2 runs).
//   Phase 2 (wrong token, then a worker token): a clear error on the form each time, still no
//           data, the refused token forgotten (not in sessionStorage, never retried).
//           Screenshots ARTIFACTS/dashboard-signin-error.png (the wrong token's error) and
//           dashboard-signin-wrong-role.png (the worker token's).
//   Phase 3 (reader token): the form goes, 'sign out' shows, the sweep row is running.
//   Phase 4 (running): two worker rows, progress strictly between 0 and 100 % with an ETA, done
//           tasks in the task table, report charts drawn while the sweep runs, then redrawn
//           from a newer sweep version. Screenshot ARTIFACTS/dashboard-signed-in.png.
//   Phase 5: a reload keeps the session (sessionStorage); sign out returns to the form, clears
//           the data, forgets the token and stops polling.
// Throughout: no token in any request URL, no page error, no request outside the dashboard.
// The tokens come in a JSON file ({"reader", "worker", "wrong"}), never on the command line,
// and are never printed. Exit 0 = all good, 1 = problems (on stderr), 2 = usage.
//   node dashboard_signin_check.mjs URL SWEEP_ID MARKER ARTIFACTS TOKENS.json SERVER_CERT.pem
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { checkDoneAndEta, checkWorkerRows, rowOf as rowOfSweep, runInBrowser,
         waitFor as driverWaitFor, workerRows } from './dashboard_driver.mjs';

const [url, sweepId, marker, artifacts, tokensPath, certPath] = process.argv.slice(2);
if (!url || !sweepId || !marker || !artifacts || !tokensPath || !certPath) {
  console.error('usage: node dashboard_signin_check.mjs URL SWEEP_ID MARKER ARTIFACTS ' +
                'TOKENS.json SERVER_CERT.pem');
  process.exit(2);
}
const tokens = JSON.parse(fs.readFileSync(tokensPath, 'utf8'));
const secrets = [tokens.reader, tokens.worker, tokens.wrong];
const t0 = Date.now();
const log = (m) => console.log(`dashboard_signin_check: [${((Date.now() - t0) / 1000).toFixed(1)} s] ${m}`);

// Chromium on Linux trusts extra CAs only through an NSS database (certutil, from
// libnss3-tools, which this machine lacks), and never through a flag. So the test trusts
// exactly sweepd's test certificate instead: --ignore-certificate-errors-spki-list ignores
// certificate errors only for a chain holding a key whose SHA-256 SPKI hash is listed — the
// test server's fresh key, made by tests/testing/test_certs for this run and for 127.0.0.1
// only. Any other certificate still fails as usual (unlike --ignore-certificate-errors or
// Playwright's ignoreHTTPSErrors, which accept every certificate). The page is still served
// over TLS: the test checks location.protocol.
const spkiHash = crypto.createHash('sha256')
  .update(new crypto.X509Certificate(fs.readFileSync(certPath)).publicKey
    .export({ type: 'spki', format: 'der' }))
  .digest('base64');

// This check polls every 100 ms.
const waitFor = (page, what, fn, arg, timeoutMs) =>
  driverWaitFor(page, what, fn, arg, timeoutMs, 100);

const rowOf = (page) => rowOfSweep(page, sweepId);

// What the page shows of sweepd's data: nothing may be there before sign-in or after sign-out.
const shownData = (page) => page.evaluate((id) => ({
  sweeps: document.querySelectorAll('#sweeps-table tbody tr').length,
  workers: document.querySelectorAll('#workers-table tbody tr').length,
  tasks: document.querySelectorAll('#tasks-table tbody tr').length,
  detailHidden: document.getElementById('sweep-detail').hidden,
  report: document.getElementById('report').textContent.length,
  sweepIdInText: document.body.innerText.includes(id),
  loginShown: !document.getElementById('login').hidden,
  signoutShown: !document.getElementById('signout').hidden,
  error: document.getElementById('login-error').textContent,
  tokenKept: sessionStorage.getItem('sweepd-token') !== null,
}), sweepId);

function expectNoData(problems, what, d) {
  if (d.sweeps || d.workers || d.tasks || !d.detailHidden || d.report || d.sweepIdInText) {
    problems.push(`${what}: sweep data visible: ${JSON.stringify(d)}`);
  }
  if (!d.loginShown) problems.push(`${what}: the sign-in form is not shown`);
  if (d.signoutShown) problems.push(`${what}: 'sign out' is shown`);
}

async function signIn(page, token) {
  await page.fill('#token-input', token);
  await page.click('#login button[type=submit]');
}

const waitForLoginError = (page, what) => waitFor(page, what, () => {
  const t = document.getElementById('login-error').textContent;
  return t !== '' && t !== 'checking…' && !document.getElementById('login').hidden;
}, null, 10000);

await runInBrowser({
  name: 'dashboard_signin_check', url, profilePrefix: 'sweepd-dashboard-signin-', log,
  extraArgs: [`--ignore-certificate-errors-spki-list=${spkiHash}`],
  // Chromium logs every 401/403 answer as a console error; those are the point here.
  ignoreConsole: (text) =>
    /Failed to load resource: the server responded with a status of 40[13]/.test(text),
  // Problems quote page text, never a token; make sure.
  redact: (p) => secrets.reduce((t, s) => t.split(s).join('<token>'), p),
  body: async (page, problems) => {
    const apiCalls = [];  // {url, status, withToken}
    const requestUrls = [];
    page.on('request', (req) => requestUrls.push(req.url()));
    page.on('response', (r) => {
      if (new URL(r.url()).pathname.startsWith('/api/')) {
        apiCalls.push({ url: r.url(), status: r.status(),
                        withToken: !!r.request().headers()['authorization'] });
      }
    });
    await page.goto(`${url}#sweep=${sweepId}`, { waitUntil: 'load' });
    if (await page.evaluate(() => location.protocol) !== 'https:') problems.push('not served over https');

    // ---- Phase 1: no token.
    await waitFor(page, 'the sign-in form', () => window.__dashboard.loginShown > 0 &&
                  !document.getElementById('login').hidden, null, 15000);
    expectNoData(problems, 'phase 1', await shownData(page));
    if (apiCalls.length === 0 || apiCalls.some((c) => c.status !== 401 || c.withToken)) {
      problems.push(`phase 1: the page's API calls answered ${JSON.stringify(apiCalls)}, want 401s`);
    }
    const direct = await page.evaluate(async (id) => {
      const out = {};
      for (const p of ['/api/sweeps', '/api/workers', `/api/sweeps/${id}/tasks`,
                       `/api/sweeps/${id}/report`, '/metrics']) {
        const r = await fetch(p, { cache: 'no-store' });
        out[p] = { status: r.status, error: (await r.json()).error || '' };
      }
      return out;
    }, sweepId);
    for (const [p, r] of Object.entries(direct)) {
      if (r.status !== 401 || !r.error.includes('no bearer token')) {
        problems.push(`phase 1: GET ${p} without a token answered ${JSON.stringify(r)}`);
      }
    }
    log(`phase 1 ok: sign-in form, no data, ${apiCalls.length} page API calls and ` +
        `${Object.keys(direct).length} direct fetches all 401`);
    fs.writeFileSync(marker, 'sign-in form shown\n');

    // ---- Phase 2: a wrong token, then a worker's.
    await signIn(page, tokens.wrong);
    await waitForLoginError(page, 'the wrong-token error');
    let d = await shownData(page);
    expectNoData(problems, 'phase 2 (wrong token)', d);
    if (!/^Sign-in failed: .*unknown bearer token/.test(d.error)) {
      problems.push(`phase 2: wrong token shows '${d.error}'`);
    }
    if (d.tokenKept) problems.push('phase 2: the refused token is kept in sessionStorage');
    await page.screenshot({ path: path.join(artifacts, 'dashboard-signin-error.png') });
    // The form waits for the user: nothing is retried (sweepd logs no stream of denials).
    const callsAfterError = apiCalls.length;
    await page.waitForTimeout(2200);  // past one poll period (2 s)
    if (apiCalls.length !== callsAfterError) {
      problems.push(`phase 2: ${apiCalls.length - callsAfterError} API calls while the form waits`);
    }
    await signIn(page, tokens.worker);
    await waitFor(page, 'the wrong-role error', () =>
      document.getElementById('login-error').textContent.startsWith('Wrong role'), null, 10000);
    d = await shownData(page);
    expectNoData(problems, 'phase 2 (worker token)', d);
    if (!d.error.includes('role worker') || !d.error.includes('reader, submitter or admin')) {
      problems.push(`phase 2: worker token shows '${d.error}'`);
    }
    if (d.tokenKept) problems.push('phase 2: the worker token is kept in sessionStorage');
    await page.screenshot({ path: path.join(artifacts, 'dashboard-signin-wrong-role.png') });
    log(`phase 2 ok: worker token -> '${(await page.textContent('#login-error'))}'`);

    // ---- Phase 3: the reader's token; no workers yet.
    await signIn(page, tokens.reader);
    await waitFor(page, 'the sweep row after sign-in', (id) =>
      !!document.querySelector(`#sweeps-table tr[data-sweep-id="${id}"]`) &&
      document.getElementById('login').hidden, sweepId, 15000);
    d = await shownData(page);
    if (d.loginShown || !d.signoutShown || !d.tokenKept) {
      problems.push(`phase 3: after sign-in ${JSON.stringify({ ...d, error: undefined })}`);
    }
    let row = await rowOf(page);
    if (row.state !== 'running') problems.push(`phase 3: state ${row.state}, want running`);
    await waitFor(page, 'task rows', () =>
      document.querySelectorAll('#tasks-table tbody tr').length > 0, null, 10000);
    log(`phase 3 ok: signed in as reader, the sweep at ${(100 * row.progress).toFixed(0)}%`);

    // ---- Phase 4: workers started by the test; the sweep runs.
    await waitFor(page, 'two worker rows', () =>
      document.querySelectorAll('#workers-table tbody tr').length === 2, null, 60000);
    await waitFor(page, 'done tasks while the sweep runs', (id) => {
      const tr = document.querySelector(`#sweeps-table tr[data-sweep-id="${id}"]`);
      return tr && tr.dataset.state === 'running' && Number(tr.dataset.progress) > 0 &&
             document.querySelectorAll('#tasks-table tbody tr[data-state="done"]').length > 0;
    }, sweepId, 60000);
    row = await rowOf(page);
    if (row.state !== 'running' || !(row.progress > 0 && row.progress < 1)) {
      problems.push(`phase 4: state ${row.state} at ${row.progress}: the sweep was not seen running`);
    }
    checkDoneAndEta(row, 'phase 4', problems);
    // The report's own count of done tasks ("32 total, 24 done, ..."): the data its charts drew.
    const reportDone = () => {
      const m = document.getElementById('report').textContent.match(/(\d+) total, (\d+) done/);
      return m ? Number(m[2]) : -1;
    };
    const chartsDrawn = () => {
      const D = window.__dashboard;
      const ids = Object.keys(D.charts);
      return ids.length > 0 && ids.every((id) => D.charts[id] === 'ok') &&
             ids.every((id) => {
               const svg = document.querySelector(`#${id} svg`);
               return svg && svg.querySelectorAll('path, rect, line, symbol, text').length >= 5;
             });
    };
    const first = await waitFor(page, 'report charts while the sweep runs', (arg) => {
      const drawn = new Function(`return (${arg.drawn})()`)();
      const tr = document.querySelector(`#sweeps-table tr[data-sweep-id="${arg.id}"]`);
      return drawn && tr && tr.dataset.state === 'running' &&
        { version: window.__dashboard.reportVersion, charts: Object.keys(window.__dashboard.charts),
          progress: Number(tr.dataset.progress), eta: tr.cells[9].textContent,
          done: new Function(`return (${arg.reportDone})()`)() };
    }, { id: sweepId, drawn: chartsDrawn.toString(), reportDone: reportDone.toString() }, 60000)
      .then((h) => h.jsonValue());
    await page.screenshot({ path: path.join(artifacts, 'dashboard-signed-in.png'), fullPage: true });
    const workers = await workerRows(page);
    checkWorkerRows(workers, 'phase 4', problems);
    if (first.done <= 0) problems.push(`phase 4: the first drawn report counts ${first.done} done`);
    const second = await waitFor(page, 'the report redrawn with more results', (arg) => {
      const drawn = new Function(`return (${arg.drawn})()`)();
      const done = new Function(`return (${arg.reportDone})()`)();
      const tr = document.querySelector(`#sweeps-table tr[data-sweep-id="${arg.id}"]`);
      return drawn && window.__dashboard.reportVersion > arg.version && done > arg.done &&
        { version: window.__dashboard.reportVersion, charts: Object.keys(window.__dashboard.charts),
          state: tr.dataset.state, progress: Number(tr.dataset.progress), done };
    }, { id: sweepId, drawn: chartsDrawn.toString(), reportDone: reportDone.toString(),
         version: first.version, done: first.done }, 60000).then((h) => h.jsonValue());
    log(`phase 4 ok: ${workers.length} workers; report v${first.version} drew ` +
        `${first.charts.length} charts (${first.charts.join(', ')}) from ${first.done} done tasks ` +
        `at ${(100 * first.progress).toFixed(0)}% (ETA ${first.eta}); v${second.version} redrew ` +
        `${second.charts.length} from ${second.done} done (${second.state})`);

    // ---- Phase 5: reload keeps the session; sign out returns to the form.
    const loginsBefore = apiCalls.filter((c) => c.status === 401 || c.status === 403).length;
    await page.reload({ waitUntil: 'load' });
    await waitFor(page, 'the sweep row after a reload', (id) =>
      !!document.querySelector(`#sweeps-table tr[data-sweep-id="${id}"]`) &&
      window.__dashboard.polls > 0, sweepId, 15000);
    d = await shownData(page);
    const loginsAfter = apiCalls.filter((c) => c.status === 401 || c.status === 403).length;
    if (d.loginShown || !d.tokenKept || !d.signoutShown || loginsAfter !== loginsBefore ||
        (await page.evaluate(() => window.__dashboard.loginShown)) !== 0) {
      problems.push(`phase 5: after reload ${JSON.stringify({ ...d, error: undefined })}, ` +
                    `${loginsAfter - loginsBefore} refused calls`);
    }
    await page.click('#signout');
    await waitFor(page, 'the sign-in form after sign out', () =>
      !document.getElementById('login').hidden, null, 10000);
    d = await shownData(page);
    expectNoData(problems, 'phase 5 (signed out)', d);
    if (d.tokenKept || !d.error.startsWith('Signed out')) {
      problems.push(`phase 5: after sign out the token is ${d.tokenKept ? '' : 'not '}kept, ` +
                    `the form says '${d.error}'`);
    }
    const callsAtSignOut = apiCalls.length;
    await page.waitForTimeout(2200);  // past one poll period: the signed-out page must not poll
    d = await shownData(page);
    expectNoData(problems, 'phase 5 (signed out, 2.2 s later)', d);
    if (apiCalls.length !== callsAtSignOut) {
      problems.push(`phase 5: ${apiCalls.length - callsAtSignOut} API calls after sign out`);
    }
    log('phase 5 ok: reload kept the session, sign out returned to the form');

    for (const u of requestUrls) {
      if (secrets.some((s) => u.includes(s) || u.includes(encodeURIComponent(s)))) {
        problems.push('a request URL holds a token');
      }
    }
    if (secrets.some((s) => page.url().includes(s))) problems.push('the page URL holds a token');
  },
});
