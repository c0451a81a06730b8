// Keyboard shortcuts and live progress. Everything also works without JavaScript.
(function () {
  "use strict";
  const page = document.body.dataset.page;
  const typing = (e) => ["INPUT", "TEXTAREA", "SELECT"].includes(e.target.tagName) && e.target.type !== "radio";

  if (page === "review") {
    const radios = () => Array.from(document.querySelectorAll('input[name="candidate_id"]:not([disabled])'));
    const click = (id) => { const b = document.getElementById(id); if (b) { b.click(); return true; } return false; };
    const go = (id) => { const a = document.getElementById(id); if (a) { window.location.href = a.href; } };
    const pick = (r) => {
      const fold = r.closest("details");
      if (fold) fold.open = true;  // a candidate below the threshold is shown when it is chosen
      r.checked = true; r.focus();
    };
    // Single-key shortcuts can be turned off (WCAG 2.1.4); the choice is kept in this browser.
    const toggle = document.getElementById("shortcuts-toggle");
    const stored = () => { try { return window.localStorage.getItem("rfr.shortcuts"); } catch (err) { return null; } };
    let enabled = stored() !== "off";
    if (toggle) {
      toggle.checked = enabled;
      toggle.addEventListener("change", () => {
        enabled = toggle.checked;
        try { window.localStorage.setItem("rfr.shortcuts", enabled ? "on" : "off"); } catch (err) { /* private mode */ }
      });
    }
    // AltGr (reported as Ctrl+Alt on some systems) is how many layouts type [ and ]: not a modifier here.
    const altGraph = (e) => (e.getModifierState && e.getModifierState("AltGraph")) || (e.ctrlKey && e.altKey);
    document.addEventListener("keydown", (e) => {
      if (!enabled || typing(e) || e.metaKey || ((e.ctrlKey || e.altKey) && !altGraph(e))) return;
      const list = radios();
      const at = list.findIndex((r) => r.checked);
      const keys = {
        j: () => { if (list.length) pick(list[Math.min(at + 1, list.length - 1)]); },
        k: () => { if (list.length) pick(list[Math.max(at - 1, 0)]); },
        p: () => click("btn-possible"), n: () => click("btn-nomatch"), i: () => click("btn-inconclusive"),
        c: () => click("btn-confirm"), o: () => click("btn-overturn"),
        "]": () => go("next-face"), "[": () => go("prev-face"), ".": () => go("next-face"), ",": () => go("prev-face"),
      };
      if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
    });
    // The service refuses these decisions; saying so before the round trip keeps the typed note.
    const form = document.getElementById("decide");
    if (form) {
      form.addEventListener("submit", (e) => {
        const button = e.submitter;
        const note = document.getElementById("note");
        const error = document.getElementById("decide-error");
        const chosen = radios().find((r) => r.checked);
        let problem = "";
        if (button && button.value === "review:possible_match") {
          if (!chosen) problem = "Choose the candidate you think is a possible match first (j / k, or click one).";
          else if (chosen.dataset.above !== "true" && !note.value.trim())
            problem = "This candidate is below the threshold: write a note saying why it is a possible match.";
        } else if (button && button.dataset.needsNote === "true" && !note.value.trim()) {
          problem = "Write a note giving the reason: it undoes another person's decision.";
        }
        if (problem) {
          e.preventDefault();
          error.textContent = problem; error.hidden = false;
          if (chosen || !button || button.value !== "review:possible_match") note.focus();
        }
      });
    }
  }

  if (page === "queue") {
    // Focus the first face's link: Enter opens it, Tab walks the rest of the queue.
    const first = document.getElementById("first-item");
    if (first) first.focus();
  }

  if (page === "submission") {
    const box = document.getElementById("progress");
    if (box && box.dataset.status !== "complete" && box.dataset.status !== "open") {
      const poll = async () => {
        try {
          const r = await fetch(`/submissions/${box.dataset.submission}`, { credentials: "same-origin", cache: "no-store" });
          if (r.ok) {
            const s = await r.json();
            document.getElementById("status").textContent = s.status;
            document.getElementById("done").textContent = s.progress.done;
            document.getElementById("failed").textContent = s.progress.failed;
            document.getElementById("pending").textContent = s.progress.queued + s.progress.processing;
            const footage = document.getElementById("footage-done");
            if (footage) footage.textContent = s.progress.footage_done_s.toFixed(1);
            if (s.status === "complete") { window.location.reload(); return; }
          }
        } catch (err) { /* keep polling */ }
        setTimeout(poll, 1500);
      };
      setTimeout(poll, 1500);
    }
  }

  if (page === "report") {
    // The Content-Security-Policy allows no inline handler: the print button is wired here.
    const print = document.getElementById("print-report");
    if (print) print.addEventListener("click", () => window.print());
  }

  if (page === "submissions") {
    const table = document.querySelector("table[data-live]");
    if (table && table.dataset.live === "on") setTimeout(() => window.location.reload(), 3000);
  }
})();
