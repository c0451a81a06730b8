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
      r.dispatchEvent(new Event("change", { bubbles: true }));  // the draft keeps the choice
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
        c: () => click("btn-confirm"), o: () => click("btn-overturn"), u: () => click("btn-undo"),
        "]": () => go("next-face"), "[": () => go("prev-face"), ".": () => go("next-face"), ",": () => go("prev-face"),
      };
      if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
    });
    // The service refuses these decisions; saying so before the round trip keeps the typed note.
    const form = document.getElementById("decide");
    // A draft of the decision (note and chosen candidate) is kept in this tab until the decision is
    // recorded: a session that expires meanwhile, or an error page, loses nothing.
    const note = document.getElementById("note");
    const version = form ? form.querySelector('input[name="expected_version"]') : null;
    if (form && note && version) {
      const key = "rfr.draft:" + window.location.pathname;
      let draft = null;
      try { draft = JSON.parse(window.sessionStorage.getItem(key) || "null"); } catch (err) { draft = null; }
      if (draft && draft.version === version.value) {
        if (draft.note && !note.value) note.value = draft.note;
        const radio = radios().find((r) => r.value === draft.candidate);
        if (radio) pick(radio);
        if (draft.note || radio) {
          const told = document.getElementById("draft-restored");
          if (told) told.hidden = false;
        }
      } else if (draft) {
        window.sessionStorage.removeItem(key);  // decided since (the version moved on)
      }
      const save = () => {
        const chosen = radios().find((r) => r.checked);
        try {
          window.sessionStorage.setItem(key, JSON.stringify(
            { version: version.value, note: note.value, candidate: chosen ? chosen.value : null }));
        } catch (err) { /* storage full or disabled: nothing to keep */ }
      };
      note.addEventListener("input", save);
      form.addEventListener("change", save);
    }
    const wanted = /^#candidate-(\d+)$/.exec(window.location.hash);
    if (wanted) {
      const radio = radios().find((r) => r.value === wanted[1]);
      if (radio) pick(radio);  // back from the comparison view with this candidate
    }
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
          return;
        }
        if (button && button.value === "confirm" && !form.dataset.confirming) {
          // A short undo: the confirmation is sent after a few seconds unless it is undone meanwhile.
          e.preventDefault();
          const pending = document.getElementById("confirm-pending");
          const countdown = document.getElementById("confirm-countdown");
          let left = 5;
          pending.hidden = false; countdown.textContent = String(left);
          document.getElementById("btn-undo").focus();
          const tick = setInterval(() => {
            left -= 1; countdown.textContent = String(left);
            if (left > 0) return;
            clearInterval(tick);
            form.dataset.confirming = "1";
            const action = document.createElement("input");
            action.type = "hidden"; action.name = "action"; action.value = "confirm";
            form.appendChild(action);
            form.submit();
          }, 1000);
          document.getElementById("btn-undo").onclick = () => {
            clearInterval(tick); pending.hidden = true; button.focus();
          };
        }
      });
    }
  }

  if (page === "compare") {
    // Linked zoom and pan: both faces are aligned to the same scale and size, so one transform
    // applies to both; an overlay (the candidate over the probe, its opacity on a slider) and a
    // flicker (the two alternating) show differences side by side would hide.
    const images = Array.from(document.querySelectorAll("img.zoomable"));
    const level = document.getElementById("zoom-level");
    const view = { zoom: 1, x: 0, y: 0 };
    const size = images.length ? images[0].width : 448;
    const apply = () => {
      const limit = size * (view.zoom - 1);
      view.x = Math.min(0, Math.max(-limit, view.x));
      view.y = Math.min(0, Math.max(-limit, view.y));
      for (const img of images) img.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.zoom})`;
      if (level) level.textContent = `${Math.round(view.zoom * 100)}%`;
      document.getElementById("pair").dataset.zoom = String(view.zoom);
    };
    const zoomAt = (factor, cx = size / 2, cy = size / 2) => {
      const zoom = Math.min(8, Math.max(1, view.zoom * factor));
      view.x = cx - ((cx - view.x) * zoom) / view.zoom;
      view.y = cy - ((cy - view.y) * zoom) / view.zoom;
      view.zoom = zoom; apply();
    };
    const button = (id, act) => { const b = document.getElementById(id); if (b) b.addEventListener("click", act); };
    button("zoom-in", () => zoomAt(1.25));
    button("zoom-out", () => zoomAt(0.8));
    button("zoom-reset", () => { view.zoom = 1; view.x = 0; view.y = 0; apply(); });
    for (const box of document.querySelectorAll(".viewport")) {
      box.addEventListener("wheel", (e) => {
        e.preventDefault();
        const r = box.getBoundingClientRect();
        zoomAt(e.deltaY < 0 ? 1.15 : 1 / 1.15, e.clientX - r.left, e.clientY - r.top);
      }, { passive: false });
      let drag = null;
      box.addEventListener("pointerdown", (e) => { drag = { x: e.clientX - view.x, y: e.clientY - view.y }; box.setPointerCapture(e.pointerId); });
      box.addEventListener("pointermove", (e) => { if (drag) { view.x = e.clientX - drag.x; view.y = e.clientY - drag.y; apply(); } });
      box.addEventListener("pointerup", () => { drag = null; });
    }
    document.addEventListener("keydown", (e) => {
      if (typing(e) || e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === "+" || e.key === "=") { e.preventDefault(); zoomAt(1.25); }
      else if (e.key === "-") { e.preventDefault(); zoomAt(0.8); }
      else if (e.key === "0") { e.preventDefault(); view.zoom = 1; view.x = 0; view.y = 0; apply(); }
    });
    const pair = document.getElementById("pair");
    const overlay = document.getElementById("overlay-aligned");
    const opacity = document.getElementById("overlay-opacity");
    let flicker = null;
    const setMode = (mode) => {
      pair.dataset.mode = mode;
      if (flicker) { clearInterval(flicker); flicker = null; }
      if (mode === "overlay") overlay.style.opacity = String(opacity.value / 100);
      if (mode === "flicker") {
        let shown = true;
        overlay.style.opacity = "1";
        flicker = setInterval(() => { shown = !shown; overlay.style.opacity = shown ? "1" : "0"; }, 600);
      }
    };
    for (const r of document.querySelectorAll('input[name="mode"]')) r.addEventListener("change", () => setMode(r.value));
    if (opacity) opacity.addEventListener("input", () => { if (pair.dataset.mode === "overlay") overlay.style.opacity = String(opacity.value / 100); });
    apply();
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
    // Live progress without reloading the page, so a half-filled new-sprint form is never wiped.
    const table = document.getElementById("submissions");
    const poll = async () => {
      let live = false;
      try {
        const r = await fetch("/submissions?limit=200", { credentials: "same-origin", cache: "no-store" });
        if (r.ok) {
          for (const s of await r.json()) {
            const row = table.querySelector(`tr[data-submission="${s.id}"]`);
            if (!row) continue;
            const done = s.progress.done + s.progress.failed;
            const status = row.querySelector('[data-field="status"]');
            status.textContent = s.status; status.className = `status ${s.status}`;
            const bar = row.querySelector("progress");
            bar.max = s.progress.total || 1; bar.value = done;
            row.querySelector('[data-field="count"]').textContent =
              `${done}/${s.progress.total}` + (s.progress.failed ? ` (${s.progress.failed} failed)` : "");
            live = live || s.status === "queued" || s.status === "processing";
          }
          table.dataset.live = live ? "on" : "off";
        } else { live = true; }
      } catch (err) { live = true; /* keep polling */ }
      if (live) setTimeout(poll, 2000);
    };
    if (table && table.dataset.live === "on") setTimeout(poll, 2000);
  }
})();
