// unitscope report: charts, unit sorting/filtering, search. Vanilla JS, works from file://.
(function () {
  "use strict";
  var root = document.body.getAttribute("data-root") || "";

  function renderCharts() {
    var charts = document.querySelectorAll("div.vega[data-spec]");
    if (!charts.length || !window.vegaEmbed) return;
    charts.forEach(function (el) {
      var spec = JSON.parse(document.getElementById(el.getAttribute("data-spec")).textContent);
      window.vegaEmbed(el, spec, {
        renderer: "svg",
        actions: { export: true, source: false, compiled: false, editor: false }
      }).catch(function (err) { el.textContent = "Chart could not be drawn: " + err; });
    });
  }

  function setupUnits() {
    var list = document.getElementById("unit-list");
    if (!list) return;
    var items = Array.prototype.slice.call(list.children);
    var buttons = document.querySelectorAll("button[data-sort]");
    var filter = document.getElementById("cat-filter");
    var count = document.getElementById("unit-count");
    var keys = {
      order: function (a, b) { return +a.dataset.order - +b.dataset.order; },
      iou: function (a, b) { return (+b.dataset.iou - +a.dataset.iou) || (+a.dataset.unit - +b.dataset.unit); },
      label: function (a, b) { return a.dataset.label.localeCompare(b.dataset.label) || (+b.dataset.iou - +a.dataset.iou); },
      unit: function (a, b) { return +a.dataset.unit - +b.dataset.unit; }
    };
    buttons.forEach(function (button) {
      button.addEventListener("click", function () {
        buttons.forEach(function (b) { b.setAttribute("aria-pressed", String(b === button)); });
        items.sort(keys[button.dataset.sort]);
        var fragment = document.createDocumentFragment();
        items.forEach(function (item) { fragment.appendChild(item); });
        list.appendChild(fragment);
      });
    });
    filter.addEventListener("change", function () {
      var value = filter.value, shown = 0;
      items.forEach(function (item) {
        var visible = !value || item.dataset.cat === value;
        item.hidden = !visible;
        if (visible) shown += 1;
      });
      count.textContent = shown + " unit" + (shown === 1 ? "" : "s");
    });
  }

  function setupSearch() {
    var input = document.getElementById("search");
    var results = document.getElementById("search-results");
    var status = document.getElementById("search-status");
    if (!input) return;
    var loading = false, pending = null;

    // Load the index once; whatever was asked while it loads (the latest request) runs when it arrives.
    function load(then) {
      if (window.UNITSCOPE_SEARCH) return then();
      pending = then;
      if (loading) return;
      loading = true;
      var script = document.createElement("script");
      script.src = root + "assets/search-index.js";
      script.onload = function () { pending(); };
      document.head.appendChild(script);
    }

    function item(href, text, kind) {
      var li = document.createElement("li"), a = document.createElement("a"), k = document.createElement("span");
      a.href = root + href;
      a.textContent = text;
      k.className = "kind";
      k.textContent = kind;
      a.appendChild(k);
      li.appendChild(a);
      return li;
    }

    function search() {
      var query = input.value.trim().toLowerCase();
      results.textContent = "";
      if (!query) { results.hidden = true; status.textContent = ""; return; }
      var data = window.UNITSCOPE_SEARCH, found = 0;
      data.concepts.forEach(function (c) {
        if (found < 12 && c[0].toLowerCase().indexOf(query) !== -1) {
          results.appendChild(item(c[3], c[0], c[1] + " · " + c[2] + " detector" + (c[2] === 1 ? "" : "s")));
          found += 1;
        }
      });
      var unitMatches = data.units.filter(function (u) {
        return u[0].toLowerCase().indexOf(query) !== -1 || ("unit " + u[2]) === query || u[1].toLowerCase().indexOf(query) !== -1;
      }).sort(function (a, b) { return b[3] - a[3]; });
      unitMatches.slice(0, 20 - found).forEach(function (u) {
        results.appendChild(item(u[4], u[0] + " — unit " + u[2], u[1] + " · IoU " + u[3].toFixed(3)));
      });
      found += Math.min(unitMatches.length, 20 - found);
      if (!found) {
        var li = document.createElement("li");
        li.className = "empty";
        li.textContent = "No match";
        results.appendChild(li);
      }
      results.hidden = false;
      status.textContent = found + " results";
    }

    input.addEventListener("focus", function () { load(function () {}); });
    input.addEventListener("input", function () { load(search); });
    input.addEventListener("keydown", function (event) {
      if (event.key === "ArrowDown") {
        var first = results.querySelector("a");
        if (first) { first.focus(); event.preventDefault(); }
      } else if (event.key === "Escape") {
        results.hidden = true;
      } else if (event.key === "Enter") {
        var top = results.querySelector("a");
        if (top) { window.location.href = top.href; }
      }
    });
    results.addEventListener("keydown", function (event) {
      var links = Array.prototype.slice.call(results.querySelectorAll("a"));
      var i = links.indexOf(document.activeElement);
      if (event.key === "ArrowDown" && i < links.length - 1) { links[i + 1].focus(); event.preventDefault(); }
      if (event.key === "ArrowUp") { (i > 0 ? links[i - 1] : input).focus(); event.preventDefault(); }
      if (event.key === "Escape") { results.hidden = true; input.focus(); }
    });
    document.addEventListener("click", function (event) {
      if (!results.contains(event.target) && event.target !== input) results.hidden = true;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    renderCharts();
    setupUnits();
    setupSearch();
  });
})();
