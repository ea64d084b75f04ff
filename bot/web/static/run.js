// The live run page: follows /runs/{id}/events and grows the transcript as the models write.
// Model text only ever goes into the page through textContent and text nodes, never as markup.
"use strict";

(function () {
  const transcript = document.getElementById("transcript");
  if (!transcript || transcript.dataset.live !== "1") return;

  const runId = transcript.dataset.run;
  const classes = JSON.parse(transcript.dataset.classes || "{}");
  const statusLine = document.getElementById("status");
  const endLine = document.getElementById("end");
  const badge = document.getElementById("state");
  const endReason = document.getElementById("end-reason");
  const finished = new Set();
  for (const el of transcript.querySelectorAll("article.reply")) finished.add(Number(el.dataset.seq));

  const after = Number(transcript.dataset.after) || 0;
  const source = new EventSource(`/runs/${runId}/events?after=${after}`);

  function nearBottom() {
    return window.innerHeight + window.scrollY >= document.body.scrollHeight - 120;
  }

  function follow(update) {
    const stick = nearBottom();
    update();
    if (stick) window.scrollTo(0, document.body.scrollHeight);
  }

  function article(seq, actor) {
    let el = document.getElementById(`reply-${seq}`);
    if (el) return el;
    el = document.createElement("article");
    el.id = `reply-${seq}`;
    el.className = "reply";
    if (classes[actor]) el.classList.add(classes[actor]);
    el.dataset.seq = String(seq);
    const name = document.createElement("h2");
    name.className = "actor";
    name.textContent = actor;
    const body = document.createElement("div");
    body.className = "body";
    el.append(name, body);
    // Replies arrive in order, but keep the page ordered by seq whatever happens.
    const later = [...transcript.querySelectorAll("article.reply")].find(
      (other) => Number(other.dataset.seq) > seq,
    );
    transcript.insertBefore(el, later || null);
    return el;
  }

  function streamingText(el) {
    let box = el.querySelector(".streaming-text");
    if (!box) {
      box = document.createElement("div");
      box.className = "prose streaming-text";
      box.append(document.createTextNode(""));
      el.querySelector(".body").replaceChildren(box);
      el.classList.add("streaming");
    }
    return box.firstChild;
  }

  function showStatus(text) {
    statusLine.textContent = text;
    statusLine.hidden = !text;
  }

  function on(kind, handle) {
    source.addEventListener(kind, (message) => handle(JSON.parse(message.data)));
  }

  on("start", (d) => {
    if (finished.has(d.seq)) return;
    follow(() => {
      const el = article(d.seq, d.actor);
      el.querySelector(".body").replaceChildren();
      streamingText(el);
    });
    showStatus("");
  });

  on("delta", (d) => {
    if (finished.has(d.seq)) return;
    follow(() => streamingText(article(d.seq, d.actor)).appendData(d.text));
  });

  on("retry", (d) => {
    showStatus(`${d.actor}: attempt ${d.attempt} failed (${d.reason}); ${d.delay < 0.05 ? "trying again now" : `trying again in ${d.delay < 10 ? d.delay.toFixed(1) : Math.round(d.delay)} s`}`);
  });

  function showTotals(totals) {
    if (!totals) return;
    document.getElementById("turns").textContent = String(totals.turns);
    document.getElementById("replies").textContent = String(totals.replies);
    document.getElementById("replies-noun").textContent = totals.replies === 1 ? "reply" : "replies";
    const count = (n) => (n === null || n === undefined ? "?" : String(n));
    document.getElementById("input-tokens").textContent = count(totals.input_tokens);
    document.getElementById("output-tokens").textContent = count(totals.output_tokens);
    if (totals.cost) document.getElementById("cost").textContent = totals.cost;
  }

  on("reply", (d) => {
    showTotals(d.totals);
    if (finished.has(d.seq)) return;
    finished.add(d.seq);
    follow(() => {
      const el = article(d.seq, d.actor);
      el.classList.remove("streaming");
      const parts = d.segments.map(([kind, text]) => {
        const part = document.createElement(kind === "mono" ? "pre" : "div");
        part.className = kind === "mono" ? "mono" : "prose";
        part.textContent = text;
        return part;
      });
      if (!parts.length) {
        const empty = document.createElement("div");
        empty.className = "prose dim";
        empty.textContent = "(no text)";
        parts.push(empty);
      }
      el.querySelector(".body").replaceChildren(...parts);
      if (d.cut_off && !el.querySelector(".cut-off")) {
        const mark = document.createElement("p");
        mark.className = "cut-off";
        mark.textContent = "cut off: this reply reached its max_tokens limit";
        el.querySelector(".actor").after(mark);
      }
    });
  });

  function finish(summary, state, totals) {
    source.close();
    showStatus("");
    showTotals(totals);
    for (const form of document.querySelectorAll("form.stop")) form.remove();
    // A reply cut off by the end was not kept: say so rather than leave it looking finished.
    for (const el of transcript.querySelectorAll("article.streaming")) {
      el.classList.replace("streaming", "cut");
      const note = document.createElement("p");
      note.className = "dim";
      note.textContent = "(cut off by the end of the run; not kept in the transcript)";
      el.append(note);
    }
    follow(() => {
      endLine.textContent = summary;
      endLine.hidden = false;
    });
    badge.textContent = state;
    badge.className = "badge state-" + state.replace(/\^/g, "").replace(/ /g, "-");
    endReason.textContent = summary;
  }

  on("end", (d) => finish(d.summary, d.label, d.totals));
  on("paused", (d) => finish(d.summary, d.state || "paused"));

  source.addEventListener("open", () => showStatus(""));
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CONNECTING) showStatus("connection lost; reconnecting…");
  });
})();
