/*
 * <related-trials>: a "More Related Trials" list for one clinical trial.
 *
 *   <script src="https://YOUR-HOST/widget.js" defer></script>
 *   <related-trials nct-id="NCT02213705" k="3"></related-trials>
 *
 * Attributes (all re-render the list when changed):
 *   nct-id             the trial whose related list is shown (required)
 *   k                  how many trials (1-100, default 5)
 *   status, phase, intervention-type, study-type
 *                      filters; several values separated by commas or spaces
 *   country            location countries as the registry spells them, several separated by "|"
 *   recruiting-only    (boolean) only trials still open to patients
 *   age, sex           an age in years the trial admits; "female" or "male"
 *   start-after, start-before
 *                      start-date range, YYYY-MM-DD (or YYYY-MM, YYYY)
 *   aspect             overall (default), condition, intervention or design: what the list relates trials by
 *   aspects            (boolean) show a small "Related by" selector that sets aspect
 *   search             (boolean) show a search box above the list: a query typed there lists the trials
 *                      most related to that text (GET /search) instead of the trial's related list
 *   query              the free-text query shown (set by the box, or by the page); empty: the trial's list
 *   api                base URL of the related-trials service (default: where this script came from)
 *   heading            heading text (default "More Related Trials"; heading="" for none)
 *
 * Without nct-id, a widget with search shows the box and waits for a query.
 * The host element carries state="loading|ready|empty|idle|error" and fires "related-trials:loaded"
 * (detail: the API's answer) or "related-trials:error" (detail: {status, message}).
 * Style it from outside with CSS custom properties (--rt-accent, --rt-font, ...) or ::part().
 * No build step and no dependencies: plain modern JavaScript, data rendered with textContent.
 */
(function () {
  "use strict";

  if (window.customElements.get("related-trials")) return;

  var SCRIPT_BASE = (function () {
    var script = document.currentScript;
    return script && script.src ? new URL("./", script.src).href : new URL("/", window.location.href).href;
  })();
  var REGISTRY = "https://clinicaltrials.gov/study/";
  var FILTERS = ["status", "phase", "intervention-type", "study-type"];
  var SINGLE_FILTERS = ["age", "sex", "start-after", "start-before"];

  var STYLE = [
    ":host { display: block; font-family: var(--rt-font, system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif);",
    "  color: var(--rt-text, #1b2733); line-height: 1.45; }",
    ":host([hidden]) { display: none; }",
    "h2 { font-size: 1.25rem; margin: 0 0 .25rem; }",
    ".list { list-style: none; margin: 0; padding: 0; }",
    ".item { padding: .85rem 0; border-top: 1px solid var(--rt-border, #dde3ea); }",
    ".item:first-child { border-top: 0; }",
    ".title { color: var(--rt-accent, #0b5394); font-weight: 600; font-size: 1.02rem; text-decoration: none;",
    "  border-radius: 2px; }",
    ".title:hover { text-decoration: underline; }",
    ".title:focus-visible { outline: 3px solid var(--rt-focus, #f2a900); outline-offset: 2px; text-decoration: underline; }",
    ".meta { display: flex; flex-wrap: wrap; gap: .4rem; align-items: center; margin-top: .35rem; font-size: .85rem; }",
    ".nct { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; color: #44505c; margin-right: .2rem; }",
    ".badge { display: inline-block; padding: .08rem .55rem; border-radius: 999px; font-size: .76rem; font-weight: 600;",
    "  background: #eef1f5; color: #3a4652; border: 1px solid #d5dbe3; }",
    ".status-open { background: #e3f4e8; color: #1d6b34; border-color: #b9e0c5; }",
    ".status-active { background: #e6f0fb; color: #174f8c; border-color: #bfd6f1; }",
    ".status-closed { background: #f1f1f1; color: #4d4d4d; border-color: #d8d8d8; }",
    ".status-stopped { background: #fbeaea; color: #8a1f1f; border-color: #efc4c4; }",
    ".search { display: flex; gap: .4rem; margin: .25rem 0 .6rem; }",
    ".search[hidden] { display: none; }",
    ".search input { flex: 1; min-width: 0; font: inherit; padding: .4rem .6rem; border: 1px solid #b9c3ce; border-radius: 6px; }",
    ".search input:focus-visible, .search button:focus-visible { outline: 3px solid var(--rt-focus, #f2a900); outline-offset: 1px; }",
    ".search button { font: inherit; padding: .4rem .9rem; border-radius: 6px; border: 1px solid var(--rt-accent, #0b5394);",
    "  background: var(--rt-accent, #0b5394); color: #fff; cursor: pointer; }",
    ".aspects { display: block; margin: 0 0 .5rem; font-size: .88rem; color: #3a4652; }",
    ".aspects[hidden] { display: none; }",
    ".aspects select { font: inherit; margin-left: .3rem; padding: .2rem .4rem; border: 1px solid #b9c3ce; border-radius: 6px; }",
    ".read-as { margin: 0 0 .3rem; font-size: .82rem; color: #55616d; }",
    ".why { margin: .35rem 0 0; font-size: .88rem; color: #55616d; }",
    ".message { padding: .9rem 1rem; border-radius: 6px; background: #f4f6f8; color: #3a4652; margin: .5rem 0; }",
    ".message.error { background: #fdf0f0; color: #8a1f1f; border: 1px solid #efc4c4; }",
    ".spinner { display: inline-block; width: .9em; height: .9em; margin-right: .5em; vertical-align: -.1em;",
    "  border: 2px solid #c4ccd5; border-top-color: var(--rt-accent, #0b5394); border-radius: 50%;",
    "  animation: spin .8s linear infinite; }",
    "@keyframes spin { to { transform: rotate(360deg); } }",
    "@media (prefers-reduced-motion: reduce) { .spinner { animation: none; } }",
  ].join("\n");

  var STATUS_CLASS = {
    RECRUITING: "open", NOT_YET_RECRUITING: "open", ENROLLING_BY_INVITATION: "open", AVAILABLE: "open",
    ACTIVE_NOT_RECRUITING: "active", COMPLETED: "closed", APPROVED_FOR_MARKETING: "closed",
    TERMINATED: "stopped", WITHDRAWN: "stopped", SUSPENDED: "stopped",
  };

  function label(value) {
    if (value === "NA") return "Phase N/A";
    var text = value.replace(/PHASE/g, "PHASE ").replace(/_/g, " ").toLowerCase().replace(/\s+/g, " ").trim();
    return text.replace(/(^|\/)(\w)/g, function (m, sep, c) { return sep + c.toUpperCase(); });
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  class RelatedTrials extends HTMLElement {
    static get observedAttributes() {
      return ["nct-id", "k", "api", "heading", "country", "recruiting-only", "search", "query", "aspect", "aspects"].concat(FILTERS, SINGLE_FILTERS);
    }

    constructor() {
      super();
      this._root = this.attachShadow({ mode: "open" });
      this._root.appendChild(el("style", { text: STYLE }));
      this._heading = el("h2", { part: "heading", id: "rt-heading" });
      this._body = el("div", { part: "body", "aria-live": "polite" });
      this._input = el("input", {
        type: "search", name: "q", maxlength: "2000", part: "search-input", "aria-label": "Search trials by text",
        placeholder: "Search by text, e.g. metformin in type 2 diabetes",
      });
      this._form = el("form", { class: "search", part: "search", role: "search", hidden: "" }, [
        this._input, el("button", { type: "submit", part: "search-button", text: "Search" }),
      ]);
      this._form.addEventListener("submit", (event) => {
        event.preventDefault();
        var text = this._input.value.trim();
        if (text) this.setAttribute("query", text);
        else this.removeAttribute("query");
      });
      this._aspect = el("select", { name: "aspect", part: "aspect-select", "aria-label": "Related by" },
        [["overall", "Overall"], ["condition", "Condition"], ["intervention", "Intervention"], ["design", "Design"]]
          .map(function (o) { return el("option", { value: o[0], text: o[1] }); }));
      this._aspect.addEventListener("change", () => {
        if (this._aspect.value === "overall") this.removeAttribute("aspect");
        else this.setAttribute("aspect", this._aspect.value);
      });
      this._aspects = el("label", { class: "aspects", part: "aspects", hidden: "" },
        [document.createTextNode("Related by "), this._aspect]);
      this._section = el("section", { part: "section" }, [this._heading, this._form, this._aspects, this._body]);
      this._root.appendChild(this._section);
      this._controller = null;
      this._scheduled = false;
    }

    connectedCallback() { this._schedule(); }

    disconnectedCallback() { if (this._controller) this._controller.abort(); }

    attributeChangedCallback(name, oldValue, newValue) {
      if (oldValue !== newValue && this.isConnected) this._schedule();
    }

    /** Re-render once per burst of attribute changes. */
    _schedule() {
      if (this._scheduled) return;
      this._scheduled = true;
      queueMicrotask(() => { this._scheduled = false; this._load(); });
    }

    _url(nctId, query) {
      var base = this.getAttribute("api") || SCRIPT_BASE;
      if (!base.endsWith("/")) base += "/";
      var path = query ? "search" : "trials/" + encodeURIComponent(nctId) + "/related";
      var url = new URL(path, new URL(base, window.location.href));
      if (query) url.searchParams.set("q", query);
      var aspect = (this.getAttribute("aspect") || "").trim().toLowerCase();
      if (!query && aspect && aspect !== "overall") url.searchParams.set("aspect", aspect);
      url.searchParams.set("k", this.getAttribute("k") || "5");
      FILTERS.forEach((name) => {
        (this.getAttribute(name) || "").split(/[\s,]+/).filter(Boolean).forEach(function (value) {
          url.searchParams.append(name.replace("-", "_"), value);
        });
      });
      (this.getAttribute("country") || "").split("|").map(function (c) { return c.trim(); }).filter(Boolean)
        .forEach(function (country) { url.searchParams.append("country", country); });
      if (this.hasAttribute("recruiting-only") && this.getAttribute("recruiting-only") !== "false") {
        url.searchParams.set("recruiting_only", "true");
      }
      SINGLE_FILTERS.forEach((name) => {
        var value = (this.getAttribute(name) || "").trim();
        if (value) url.searchParams.set(name.replace("-", "_"), value);
      });
      return url;
    }

    async _load() {
      var heading = this.hasAttribute("heading") ? this.getAttribute("heading") : "More Related Trials";
      this._heading.textContent = heading;
      this._heading.hidden = !heading;
      var nctId = (this.getAttribute("nct-id") || "").trim().toUpperCase();
      var searching = this.hasAttribute("search") && this.getAttribute("search") !== "false";
      var query = (this.getAttribute("query") || "").trim();
      this._form.hidden = !searching;
      this._aspects.hidden = !(this.hasAttribute("aspects") && this.getAttribute("aspects") !== "false") || !!query;
      this._aspect.value = (this.getAttribute("aspect") || "overall").trim().toLowerCase();
      if (this._input.value.trim() !== query) this._input.value = query;
      if (this._controller) this._controller.abort();
      if (!nctId && !query) {
        if (!searching) return this._fail(0, "No trial given: set the nct-id attribute.");
        this._setState("idle");
        return this._show(el("p", { class: "message", role: "status", text: "Type a few words to find related trials." }));
      }
      var controller = (this._controller = new AbortController());
      this._setState("loading");
      this._show(el("p", { class: "message", role: "status" }, [
        el("span", { class: "spinner", "aria-hidden": "true" }),
        document.createTextNode(query ? "Searching\u2026" : "Loading related trials\u2026"),
      ]));
      var response, data;
      try {
        response = await fetch(this._url(nctId, query), { signal: controller.signal, headers: { Accept: "application/json" } });
        data = await response.json().catch(function () { return null; });
      } catch (error) {
        if (error.name === "AbortError") return;
        return this._fail(0, "Related trials could not be loaded (the service did not answer).");
      }
      if (controller.signal.aborted) return;
      if (response.status === 404 && !query) return this._fail(404, "No trial " + nctId + " in the index.");
      if (!response.ok) {
        var detail = data && typeof data.detail === "string" ? ": " + data.detail : ".";
        var prefix = response.status === 422 ? "Invalid request" : "Related trials could not be loaded";
        return this._fail(response.status, prefix + detail);
      }
      this._render(data);
    }

    _render(data) {
      var items = data.related || [];
      var readAs = data.matched ? RelatedTrials.readAs(data.matched) : null;
      if (!items.length) {
        this._setState("empty");
        var none = data.matched ? "No trials match this search and these filters." : "No related trials match these filters.";
        this._show(el("p", { class: "message", role: "status", text: none }));
      } else {
        var list = el("ol", { class: "list", part: "list", "aria-label": this._heading.textContent || "Related trials" },
          items.map(function (item) { return RelatedTrials.item(item); }));
        this._body.replaceChildren.apply(this._body, [readAs, list].filter(Boolean));
        this._setState("ready");
      }
      this.dispatchEvent(new CustomEvent("related-trials:loaded", { detail: data, bubbles: true, composed: true }));
    }

    /** "Read as: condition type 2 diabetes · intervention metformin · Phase 3" from /search's matched. */
    static readAs(matched) {
      var parts = [];
      (matched.conditions || []).forEach(function (c) { parts.push("condition " + c); });
      (matched.interventions || []).forEach(function (i) { parts.push("intervention " + i); });
      (matched.phase || []).forEach(function (p) { parts.push(label(p)); });
      return el("p", { class: "read-as", part: "read-as", text: "Read as: " + (parts.join(" \u00b7 ") || "text only") });
    }

    static item(item) {
      var meta = el("div", { class: "meta" }, [el("span", { class: "nct", text: item.nct_id })]);
      if (item.status) {
        meta.appendChild(el("span", {
          class: "badge status status-" + (STATUS_CLASS[item.status] || "other"),
          "data-status": item.status, title: "Recruitment status", text: label(item.status),
        }));
      }
      if (item.phase) {
        meta.appendChild(el("span", {
          class: "badge phase", "data-phase": item.phase, title: "Clinical phase", text: label(item.phase),
        }));
      }
      var why = item.why && item.why.summary
        ? el("p", { class: "why", text: item.why.summary.charAt(0).toUpperCase() + item.why.summary.slice(1) })
        : null;
      return el("li", { class: "item", part: "item", "data-nct-id": item.nct_id }, [
        el("a", { class: "title", part: "link", href: REGISTRY + encodeURIComponent(item.nct_id), text: item.title }),
        meta,
        why,
      ]);
    }

    _fail(status, message) {
      this._setState("error");
      this._show(el("p", { class: "message error", role: "alert", text: message }));
      this.dispatchEvent(new CustomEvent("related-trials:error", {
        detail: { status: status, message: message }, bubbles: true, composed: true,
      }));
    }

    _show(node) {
      this._body.replaceChildren(node);
    }

    _setState(state) {
      this.setAttribute("state", state);
      this._body.setAttribute("aria-busy", state === "loading" ? "true" : "false");
    }
  }

  window.customElements.define("related-trials", RelatedTrials);
})();
