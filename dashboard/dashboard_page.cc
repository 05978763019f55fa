// The dashboard page. See dashboard_page.h.
#include "dashboard/dashboard_page.h"

namespace sweepd {
namespace {

constexpr char kPage[] = R"html(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>sweepd</title>
<link rel="icon" href="data:,">
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 16px 24px; color: #222; }
header { display: flex; align-items: baseline; gap: 16px; }
h1 { margin: 0 0 8px 0; font-size: 22px; } h2 { font-size: 17px; margin: 20px 0 6px 0; }
#updated { color: #777; font-size: 12px; }
table { border-collapse: collapse; font-size: 13px; margin: 4px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; white-space: nowrap; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
#sweeps-table tbody tr { cursor: pointer; }
#sweeps-table tbody tr.selected td { background: #eaf2fd; }
.bar { display: inline-block; width: 120px; height: 10px; background: #eee; vertical-align: middle; }
.bar > div { height: 100%; background: #3c8dbc; }
.state-running { color: #1a6fb0; } .state-done { color: #2a7a2a; } .state-failed { color: #b03030; }
.state-cancelled { color: #777; } .state-leased { color: #1a6fb0; } .state-pending { color: #8a6d3b; }
.filters { margin: 6px 0; font-size: 13px; } .filters label { margin-right: 12px; }
.note { color: #8a6d3b; background: #fcf8e3; padding: 4px 8px; }
#report .chart { margin: 12px 0; min-height: 30px; }
#report table td { text-align: right; } #report table td:first-child { text-align: left; }
.error { color: #b03030; }
#login { margin: 8px 0 12px 0; padding: 8px 12px; background: #f4f4f4; border: 1px solid #ddd; }
#login input { width: 28em; } #signout { font-size: 12px; }
#login-error { display: block; margin: 6px 0; font-weight: 600; }
</style>
<script src="/assets/vega.min.js"></script>
<script src="/assets/vega-lite.min.js"></script>
<script src="/assets/vega-embed.min.js"></script>
</head>
<body>
<header><h1>sweepd</h1><span id="updated">connecting…</span><span id="poll-error" class="error"></span>
<a id="signout" href="#" hidden>sign out</a></header>
<form id="login" hidden autocomplete="off" action="#">
<label>This sweepd needs a bearer token (reader, submitter or admin):
<input id="token-input" type="password" autocomplete="off" spellcheck="false"></label>
<button type="submit">Sign in</button> <span id="login-error" class="error"></span>
<div class="note">The token stays in this tab (sessionStorage, gone when the tab closes) and is sent only to this sweepd, as an Authorization header; sign out forgets it.</div>
</form>
<h2>Sweeps</h2>
<table id="sweeps-table">
<thead><tr><th>sweep</th><th>name</th><th>state</th><th>progress</th><th>done</th><th>failed</th>
<th>running</th><th>pending</th><th>tasks/s</th><th>ETA</th></tr></thead>
<tbody></tbody></table>
<p id="no-sweeps" class="note" hidden>No sweeps yet: submit one with sweepctl submit.</p>
<h2>Workers</h2>
<table id="workers-table">
<thead><tr><th>name</th><th>device</th><th>GPUs</th><th>TP</th><th>model</th><th>leases</th>
<th>last heartbeat</th><th>draining</th><th>live</th><th>tasks done</th></tr></thead>
<tbody></tbody></table>
<section id="sweep-detail" hidden>
<h2 id="detail-title"></h2>
<div class="filters">
<label>state <select id="filter-state"><option value="">any</option><option>pending</option>
<option>leased</option><option>done</option><option>failed</option><option>cancelled</option></select></label>
<label>stage <select id="filter-stage"><option value="*">any</option></select></label>
<label>intervention <input id="filter-intervention" size="18" placeholder="e.g. skip:3"></label>
</div>
<p id="tasks-summary"></p>
<table id="tasks-table">
<thead><tr><th>#</th><th>state</th><th>kind</th><th>stage</th><th>interventions</th><th>params</th>
<th>dataset</th><th>attempts</th><th>worker</th><th>metrics</th><th>error</th></tr></thead>
<tbody></tbody></table>
<h2>Report</h2>
<div id="report"><p class="note">Waiting for results…</p></div>
</section>
<script>
(function () {
  var D = window.__dashboard = {polls: 0, lastError: '', selected: '', reportVersion: -1,
                                charts: {}, tasksShown: 0, loginShown: 0};
  var reportPending = false;
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function num(v) { var td = el('td', v, 'num'); return td; }
  function duration(s) {
    if (s === null || s === undefined || !isFinite(s)) return '–';
    s = Math.round(s);
    if (s >= 3600) return Math.floor(s / 3600) + 'h' + String(Math.floor(s % 3600 / 60)).padStart(2, '0') + 'm';
    if (s >= 60) return Math.floor(s / 60) + 'm' + String(s % 60).padStart(2, '0') + 's';
    return s + 's';
  }
  function ago(ms) { return duration(ms / 1000) + ' ago'; }
  // Bearer token (docs/SECURITY.md, "Dashboard"): kept in this tab's
  // sessionStorage, sent as a header to this origin only (never a cookie, so
  // no other site can make the browser use it; never in a URL, so no log holds
  // it). A 401 or 403 shows the sign-in form, clears every shown row and
  // stops polling until a token is entered (an idle sign-in page sends
  // nothing, so sweepd logs no stream of denials); a refused token is
  // forgotten, not retried. `session` counts token changes: an answer to a
  // request made under another token is dropped, so a reply still in flight
  // at sign-out or at a new sign-in never draws rows or the wrong message.
  var TOKEN_KEY = 'sweepd-token';
  var session = 0;
  var waitingForToken = false;
  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }
  function setToken(t) {
    try { if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY); } catch (e) {}
    session += 1;
    document.getElementById('signout').hidden = !t;
  }
  function clearData() {
    ['#sweeps-table tbody', '#workers-table tbody', '#tasks-table tbody'].forEach(function (q) {
      document.querySelector(q).textContent = '';
    });
    document.getElementById('no-sweeps').hidden = true;
    document.getElementById('sweep-detail').hidden = true;
    document.getElementById('detail-title').textContent = '';
    document.getElementById('tasks-summary').textContent = '';
    document.getElementById('report').textContent = '';
    document.getElementById('poll-error').textContent = '';
    document.getElementById('updated').textContent = 'signed out';
    D.reportVersion = -1; D.charts = {}; D.tasksShown = 0;
  }
  function showLogin(message) {
    waitingForToken = true;
    clearData();
    document.getElementById('login').hidden = false;
    document.getElementById('login-error').textContent = message || '';
    document.getElementById('token-input').focus();
    D.loginShown += 1;
  }
  function refusal(status, t, why) {
    if (!t) return '';
    if (status === 403) {
      return 'Wrong role: sweepd knows this token but it may not read the dashboard (' + why +
             '). Sign in with a reader, submitter or admin token.';
    }
    return 'Sign-in failed: sweepd refused this token (' + why + ').';
  }
  function getJson(url) {
    if (waitingForToken) {
      // The rest of a poll that began before sign-out or a refusal: send nothing.
      var idle = new Error('waiting for a token');
      idle.stale = true;
      return Promise.reject(idle);
    }
    var headers = {};
    var t = token();
    var asked = session;
    if (t) headers['Authorization'] = 'Bearer ' + t;
    return fetch(url, {cache: 'no-store', credentials: 'omit', headers: headers}).then(function (r) {
      return r.json().then(function (body) {
        if (asked !== session) {
          var stale = new Error('answer for a previous sign-in');
          stale.stale = true;
          throw stale;
        }
        if (r.status === 401 || r.status === 403) {
          var why = body.error || ('HTTP ' + r.status);
          if (t) setToken('');
          showLogin(refusal(r.status, t, why));
          var e = new Error('sign in: ' + why);
          e.auth = true;
          throw e;
        }
        if (!r.ok) throw new Error(body.error || ('HTTP ' + r.status));
        return body;
      });
    });
  }
  function renderSweeps(data) {
    var tbody = document.querySelector('#sweeps-table tbody');
    tbody.textContent = '';
    document.getElementById('no-sweeps').hidden = data.sweeps.length > 0;
    if (!D.selected && data.sweeps.length) {
      var fromHash = decodeURIComponent((location.hash.match(/sweep=([^&]+)/) || [])[1] || '');
      D.selected = fromHash || data.sweeps[data.sweeps.length - 1].sweep_id;
    }
    data.sweeps.forEach(function (s) {
      var tr = el('tr');
      tr.dataset.sweepId = s.sweep_id;
      tr.dataset.state = s.state;
      tr.dataset.version = s.version;
      tr.dataset.progress = s.progress;
      if (s.sweep_id === D.selected) tr.className = 'selected';
      tr.appendChild(el('td', s.sweep_id));
      tr.appendChild(el('td', s.name));
      tr.appendChild(el('td', s.state, 'state-' + s.state));
      var progress = el('td');
      var bar = el('span', null, 'bar'); var fill = el('div');
      fill.style.width = (100 * s.progress).toFixed(1) + '%';
      bar.appendChild(fill); progress.appendChild(bar);
      progress.appendChild(el('span', ' ' + (100 * s.progress).toFixed(0) + '%', 'pct'));
      progress.className = 'progress';
      tr.appendChild(progress);
      tr.appendChild(num(s.done + '/' + s.total));
      tr.appendChild(num(s.failed));
      tr.appendChild(num(s.leased));
      tr.appendChild(num(s.pending));
      tr.appendChild(num(s.tasks_per_second.toFixed(1)));
      tr.appendChild(num(s.state === 'running' ? duration(s.eta_seconds) : '–'));
      if (s.blocked_reason) tr.title = s.blocked_reason;
      tr.addEventListener('click', function () { select(s.sweep_id); });
      tbody.appendChild(tr);
    });
    var current = data.sweeps.filter(function (s) { return s.sweep_id === D.selected; })[0];
    var detail = document.getElementById('sweep-detail');
    detail.hidden = !current;
    if (current) {
      document.getElementById('detail-title').textContent =
        'Sweep ' + current.name + ' (' + current.sweep_id + ')';
      if (current.version !== D.reportVersion && !reportPending) loadReport(current);
    }
  }
  function renderWorkers(data) {
    var tbody = document.querySelector('#workers-table tbody');
    tbody.textContent = '';
    data.workers.forEach(function (w) {
      var tr = el('tr');
      tr.dataset.workerId = w.worker_id;
      tr.appendChild(el('td', w.name));
      tr.appendChild(el('td', w.device_kind));
      tr.appendChild(num(w.gpu_count));
      tr.appendChild(num(w.tensor_parallel));
      tr.appendChild(el('td', w.model_fingerprint ? w.model_fingerprint.slice(0, 16) : '–'));
      tr.appendChild(num(w.active_leases));
      tr.appendChild(el('td', ago(data.now_unix_ms - w.last_heartbeat_unix_ms)));
      tr.appendChild(el('td', w.draining ? 'yes' : 'no'));
      tr.appendChild(el('td', w.live ? 'yes' : 'no'));
      tr.appendChild(num(w.tasks_done));
      tbody.appendChild(tr);
    });
  }
  function tasksUrl() {
    var q = [];
    var state = document.getElementById('filter-state').value;
    var stage = document.getElementById('filter-stage').value;
    var iv = document.getElementById('filter-intervention').value;
    if (state) q.push('state=' + encodeURIComponent(state));
    if (stage !== '*') q.push('stage=' + encodeURIComponent(stage));
    if (iv) q.push('intervention=' + encodeURIComponent(iv));
    q.push('limit=500');
    return '/api/sweeps/' + encodeURIComponent(D.selected) + '/tasks?' + q.join('&');
  }
  function renderTasks(data) {
    var stageSelect = document.getElementById('filter-stage');
    var known = Array.prototype.map.call(stageSelect.options, function (o) { return o.value; });
    data.stages.forEach(function (s) {
      if (known.indexOf(s) < 0) {
        var o = el('option', s === '' ? '(first)' : s); o.value = s; stageSelect.appendChild(o);
      }
    });
    var tbody = document.querySelector('#tasks-table tbody');
    tbody.textContent = '';
    data.tasks.forEach(function (t) {
      var tr = el('tr');
      tr.dataset.taskKey = t.task_key;
      tr.dataset.state = t.state;
      tr.dataset.stage = t.stage;
      tr.appendChild(num(t.index));
      tr.appendChild(el('td', t.state, 'state-' + t.state));
      tr.appendChild(el('td', t.kind));
      tr.appendChild(el('td', t.stage || '(first)'));
      tr.appendChild(el('td', t.interventions));
      tr.appendChild(el('td', t.params));
      tr.appendChild(el('td', t.dataset));
      tr.appendChild(num(t.attempts));
      tr.appendChild(el('td', t.worker_id));
      tr.appendChild(num(t.metrics));
      tr.appendChild(el('td', t.error, t.error ? 'error' : ''));
      tbody.appendChild(tr);
    });
    D.tasksShown = data.tasks.length;
    document.getElementById('tasks-summary').textContent =
      data.matched + ' task(s) match' + (data.truncated ? ' (first ' + data.tasks.length + ' shown)' : '');
  }
  function loadTasks() {
    if (!D.selected) return Promise.resolve();
    var selected = D.selected;
    return getJson(tasksUrl()).then(function (data) { if (selected === D.selected) renderTasks(data); });
  }
  function loadReport(sweep) {
    reportPending = true;
    return getJson('/api/sweeps/' + encodeURIComponent(sweep.sweep_id) + '/report').then(function (r) {
      if (r.sweep_id !== D.selected) return;
      var div = document.getElementById('report');
      div.textContent = '';
      if (r.error) { div.appendChild(el('p', 'No report yet: ' + r.error, 'note')); }
      var body = document.createElement('div');
      body.innerHTML = r.body;   // server-built HTML, every value escaped (client/report_html.cc)
      div.appendChild(body);
      var charts = {};
      var runs = Object.keys(r.specs).map(function (id) {
        charts[id] = 'pending';
        return vegaEmbed('#' + id, r.specs[id], {actions: false, renderer: 'svg'})
          .then(function () { charts[id] = 'ok'; })
          .catch(function (e) { charts[id] = 'error: ' + (e && e.message ? e.message : e); });
      });
      D.charts = charts;
      D.reportVersion = r.version;
      return Promise.all(runs);
    }).catch(function (e) {
      // A refused token already shows the sign-in form; a stale answer is dropped.
      if (e && (e.stale || e.auth)) return;
      var div = document.getElementById('report');
      div.textContent = '';
      div.appendChild(el('p', 'Report unavailable: ' + (e && e.message ? e.message : e), 'error'));
    }).finally(function () { reportPending = false; });
  }
  function select(id) {
    D.selected = id;
    D.reportVersion = -1;
    D.charts = {};
    location.hash = 'sweep=' + encodeURIComponent(id);
    document.getElementById('filter-stage').length = 1;
    document.getElementById('report').textContent = '';
    poll();
  }
  function poll() {
    return Promise.all([getJson('/api/sweeps').then(renderSweeps),
                        getJson('/api/workers').then(renderWorkers)])
      .then(loadTasks)
      .then(function () {
        D.polls += 1; D.lastError = '';
        document.getElementById('login').hidden = true;
        document.getElementById('signout').hidden = !token();
        document.getElementById('poll-error').textContent = '';
        document.getElementById('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
      })
      .catch(function (e) {
        if (e && e.stale) return;
        D.lastError = String(e && e.message ? e.message : e);
        document.getElementById('poll-error').textContent =
          e && e.auth ? '' : 'sweepd unreachable: ' + D.lastError;
      });
  }
  document.getElementById('login').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var input = document.getElementById('token-input');
    var t = input.value.trim();
    input.value = '';
    if (!t) {
      document.getElementById('login-error').textContent = 'Enter a token.';
      return;
    }
    setToken(t);
    waitingForToken = false;
    document.getElementById('login-error').textContent = 'checking…';
    poll();
  });
  document.getElementById('signout').addEventListener('click', function (ev) {
    ev.preventDefault();
    setToken('');
    showLogin('Signed out: the token is forgotten in this tab.');
  });
  setToken(token());
  // A failed reload of the tasks shows at the next poll.
  function reloadTasks() { loadTasks().catch(function () {}); }
  ['filter-state', 'filter-stage'].forEach(function (id) {
    document.getElementById(id).addEventListener('change', reloadTasks);
  });
  document.getElementById('filter-intervention').addEventListener('input', reloadTasks);
  poll();
  setInterval(function () { if (!waitingForToken) poll(); }, 2000);
})();
</script>
</body>
</html>
)html";

}  // namespace

const std::string& DashboardPageHtml() {
  static const std::string* page = new std::string(kPage);
  return *page;
}

}  // namespace sweepd
