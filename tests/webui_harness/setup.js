// Runs before the page's modules: the portal's address (the build's VITE_AGENT_PORTAL_URL, read
// when the API helper loads) and Open WebUI's session token, both from the harness's URL.
const params = new URLSearchParams(location.search);
window.PORTAL_URL = params.get("portal") || "";
localStorage.token = params.get("token") || "";
