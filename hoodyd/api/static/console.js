// hoodyd console: live programs table, log follow and filter, and the terminal. Values come
// from data- attributes; nothing from the server is evaluated.
(function () {
  "use strict";
  var live = document.getElementById("live");
  function say(text) { if (live) live.textContent = text; }

  // programs: the table body is fetched again on each state change from the event stream
  if (live && live.dataset.events) {
    var pending = null;
    var refresh = function () {
      pending = null;
      fetch(live.dataset.table, { credentials: "same-origin" }).then(function (r) {
        if (r.status === 401) { location.href = "/api/v1/run/login"; return null; }
        return r.ok ? r.text() : null;
      }).then(function (html) {
        if (html === null) return;
        var body = document.getElementById("programs");
        var holder = document.createElement("table");
        holder.innerHTML = html;
        var fresh = holder.querySelector("tbody");
        if (body && fresh) body.replaceWith(fresh);
      });
    };
    var source = new EventSource(live.dataset.events);
    source.onopen = function () { say("live"); };
    source.onerror = function () { say("reconnecting…"); };
    source.onmessage = function (event) {
      try {
        var change = JSON.parse(event.data);
        say("live · " + change.program.name + " " + change.event);
      } catch (e) { /* a comment or an unknown line */ }
      if (!pending) pending = setTimeout(refresh, 150);
    };
  }

  // logs: a filter over the shown lines, and following the stream
  var log = document.getElementById("log");
  if (log) {
    var filter = document.getElementById("filter");
    var text = log.textContent;
    var render = function () {
      var wanted = filter.value.toLowerCase();
      log.textContent = !wanted ? text : text.split("\n").filter(function (line) {
        return line.toLowerCase().indexOf(wanted) !== -1;
      }).join("\n");
      log.scrollTop = log.scrollHeight;
    };
    filter.addEventListener("input", render);
    var follow = document.getElementById("follow");
    var controller = null;
    follow.addEventListener("change", function () {
      if (!follow.checked) { if (controller) controller.abort(); say(""); return; }
      controller = new AbortController();
      say("following…");
      var decoder = new TextDecoder();
      fetch(follow.dataset.url, { credentials: "same-origin", signal: controller.signal })
        .then(function (response) {
          if (!response.ok) { say("cannot follow: " + response.status); return; }
          say("following live");
          var reader = response.body.getReader();
          var pump = function () {
            return reader.read().then(function (chunk) {
              if (chunk.done) { say("stream ended"); return; }
              text += decoder.decode(chunk.value, { stream: true });
              render();
              return pump();
            });
          };
          return pump();
        }).catch(function () { if (follow.checked) say("stopped"); });
    });
    log.scrollTop = log.scrollHeight;
  }

  // terminal: xterm.js over the console's WebSocket; watch mode sends nothing
  var el = document.getElementById("terminal");
  if (el && window.Terminal) {
    var interactive = el.dataset.mode === "interactive";
    var term = new window.Terminal({ disableStdin: !interactive, scrollback: 5000,
      cursorBlink: interactive, convertEol: false });
    term.open(el);
    window.hoodydTerminal = term;
    var ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") +
      location.host + el.dataset.socket);
    ws.binaryType = "arraybuffer";
    var send = function (frame) { if (ws.readyState === 1) ws.send(JSON.stringify(frame)); };
    var measure = document.createElement("span");
    measure.style.cssText = "position:absolute;visibility:hidden;white-space:pre;font-family:" +
      term.options.fontFamily + ";font-size:" + term.options.fontSize + "px";
    measure.textContent = "WWWWWWWWWW";
    document.body.appendChild(measure);
    var fit = function () {
      // the terminal fills the box the stylesheet gives it: cells from the font's size
      var box = measure.getBoundingClientRect();
      var cellWidth = box.width / 10 || 9, cellHeight = box.height || 17;
      var cols = Math.max(20, Math.floor((el.clientWidth - 8) / cellWidth));
      var lines = Math.max(5, Math.floor((el.clientHeight - 8) / cellHeight));
      if (cols !== term.cols || lines !== term.rows) term.resize(cols, lines);
    };
    ws.onopen = function () {
      say(interactive ? "connected" : "watching");
      fit();
      if (interactive) send({ type: "resize", cols: term.cols, rows: term.rows });
      term.focus();
    };
    ws.onmessage = function (m) {
      if (typeof m.data === "string") {
        var j = JSON.parse(m.data);
        if (j.type === "exit") say("shell exited");
        return;
      }
      term.write(new Uint8Array(m.data));
    };
    ws.onclose = function () { if (live && live.textContent !== "shell exited") say("closed"); };
    if (interactive) {
      // a paste goes as a paste: hoodyd encodes it as its API does (no control characters,
      // bracketed when the program asked for it), before xterm.js would send it as keys
      el.addEventListener("paste", function (event) {
        var text = event.clipboardData ? event.clipboardData.getData("text/plain") : "";
        event.preventDefault();
        event.stopPropagation();
        if (text) send({ type: "paste", data: text });
      }, true);
      term.onData(function (data) { send({ type: "input", data: data }); });
      term.onResize(function (size) { send({ type: "resize", cols: size.cols, rows: size.rows }); });
    }
    window.addEventListener("resize", fit);
  }
})();
