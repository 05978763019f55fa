// The dashboard's one HTML page (HTML, CSS and script in one string): polls
// /api/sweeps and /api/workers every 2 s, shows the selected sweep's tasks
// with state / stage / intervention filters and its report, drawn with the
// Vega builds served from /assets/ (no CDN: works offline). When sweepd has a
// token file the API answers 401/403 until the page sends a reader token:
// the page then shows a sign-in form, keeps the token in this tab's
// sessionStorage and sends it as `Authorization: Bearer` with every fetch
// (never as a cookie or in a URL); a refused token is forgotten, the form
// says why (unknown token / wrong role), and while the form waits (signed
// out) the page sends nothing and shows no data. The script keeps
// window.__dashboard = {polls, lastError, selected, reportVersion, charts,
// loginShown} up to date for tests and the curious. Static storage;
// thread-safe.
#ifndef SWEEPD_DASHBOARD_DASHBOARD_PAGE_H_
#define SWEEPD_DASHBOARD_DASHBOARD_PAGE_H_

#include <string>

namespace sweepd {

const std::string& DashboardPageHtml();

}  // namespace sweepd

#endif  // SWEEPD_DASHBOARD_DASHBOARD_PAGE_H_
