// The minimal Open WebUI around the Monitoring page: the session token in localStorage (as Open
// WebUI keeps it, set by setup.js before anything else loads) and the i18n context every page
// reads (here it returns the English key).
import "./setup.js";
import { mount } from "svelte";
import { writable } from "svelte/store";
import MonitoringPage from "monitoring-page";

mount(MonitoringPage, {
  target: document.getElementById("app"),
  context: new Map([["i18n", writable({ t: (key) => key })]]),
});
