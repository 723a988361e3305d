// makeanything review site: plain JavaScript, no network. Data comes from data/task-*.js (window.MA_DATA).
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  // Index and rejected pages: a text box filters the rows of a table.
  function rowFilter(inputId, tableId) {
    const input = $(inputId), table = $(tableId);
    if (!input || !table) return;
    input.addEventListener("input", () => {
      const q = input.value.trim().toLowerCase();
      for (const tr of table.tBodies[0].rows) tr.hidden = q !== "" && !tr.textContent.toLowerCase().includes(q);
    });
  }
  rowFilter("task-filter", "tasks");
  rowFilter("rejected-filter", "rejected");

  const page = window.MA_PAGE;
  if (!page) return;
  const records = [].concat(...page.tasks.map((t) => (window.MA_DATA && window.MA_DATA[t]) || []));
  const f = {task: $("f-task"), source: $("f-source"), split: $("f-split"), score: $("f-score"),
             min: $("f-min"), max: $("f-max"), excluded: $("f-excluded")};
  const options = (select, values) => values.forEach((v) => select.append(el("option", {value: v}, v)));
  options(f.task, page.tasks);
  if (page.tasks.length < 2) f.task.closest("label").hidden = true;
  options(f.score, page.scores);
  if (page.scores.length === 0) $("f-scores").hidden = true;  // nothing here has a score to filter on
  let current = 0;

  function matches(r) {
    if (f.task.value && r.t !== f.task.value) return false;
    const src = f.source.value.trim().toLowerCase();
    if (src && !r.i.toLowerCase().includes(src) && !r.u.toLowerCase().includes(src)) return false;
    if (f.split.value && r.sp !== f.split.value) return false;
    if (!f.excluded.checked && r.x) return false;
    const lo = f.min.value === "" ? null : Number(f.min.value), hi = f.max.value === "" ? null : Number(f.max.value);
    if (lo === null && hi === null) return true;
    const v = r.sc[f.score.value];
    if (v === null || v === undefined) return false;  // a range asks for a score this sequence lacks
    return (lo === null || v >= lo) && (hi === null || v <= hi);
  }

  function card(r) {
    const scores = el("dl", {class: "scores"});
    for (const name of page.scores) {  // only the scores this sequence has
      const v = r.sc[name];
      if (v !== null && v !== undefined) scores.append(el("dt", {}, name), el("dd", {}, String(v)));
    }
    const steps = el("ol", {class: "steps"});
    r.st.forEach((s) => steps.append(el("li", {}, s)));
    const box = el("article", {class: r.x ? "card excluded" : "card", "data-key": r.k},
      el("img", {src: r.th, alt: r.k, loading: "lazy", width: "256"}),
      el("h3", {}, r.k),
      el("p", {class: "caption"}, r.c),
      el("p", {class: "source"}, `${r.kd} · ${r.u}` + (r.l ? ` · ${r.l}` : "") + ` · ${r.sp}`),
      steps, scores);
    if (r.x) box.append(el("p", {class: "verdict"}, `${r.x[0]}: ${r.x[1]} (${r.x[2]}, ${r.x[3]})`));
    return box;
  }

  function pager(pages) {
    for (const p of document.querySelectorAll(".pager")) {
      p.replaceChildren();
      const go = (n, label) => {
        const b = el("button", {type: "button"}, label);
        b.disabled = n < 0 || n >= pages || n === current;
        b.addEventListener("click", () => { current = n; render(); });
        return b;
      };
      p.append(go(current - 1, "‹ previous"), ` page ${pages ? current + 1 : 0} of ${pages} `, go(current + 1, "next ›"));
    }
  }

  function render() {
    const hits = records.filter(matches);
    const pages = Math.ceil(hits.length / page.pageSize);
    current = Math.max(0, Math.min(current, pages - 1));
    $("count").textContent = `${hits.length} of ${records.length} sequences`;
    const cards = $("cards");
    cards.replaceChildren(...hits.slice(current * page.pageSize, (current + 1) * page.pageSize).map(card));
    pager(pages);
  }

  for (const input of Object.values(f)) {
    input.addEventListener(input.tagName === "SELECT" || input.type === "checkbox" ? "change" : "input",
                           () => { current = 0; render(); });
  }
  render();
})();
