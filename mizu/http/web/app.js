// The end-user page: talks only to the JSON API under /api/v1/ (same origin).
// Every value from the server or the user is shown with textContent, never as HTML.
"use strict";

(function () {
  var API = "api/v1/";
  var POLL_MS = 1500;
  // tb_callbacks statuses: a row in one of these never changes again.
  var FINAL = ["completed", "failed", "done", "cancelled"];
  var MEANING = {
    pending: "waiting to be dialled",
    calling_a: "calling your phone",
    ivr: "your phone answered",
    calling_b: "calling the destination",
    bridged: "connected",
    completed: "finished",
    done: "finished",
    failed: "did not work out",
    cancelled: "cancelled"
  };

  var auth = null; // "Basic ..." while logged in; in memory only, gone on reload
  var watching = null; // {id, timer} of the callback whose status is polled

  function $(id) { return document.getElementById(id); }

  function show(el, text) {
    el.textContent = text;
    el.hidden = !text;
  }

  // btoa only takes Latin-1; credentials are UTF-8 on the wire.
  function basic(user, password) {
    var bytes = new TextEncoder().encode(user + ":" + password);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return "Basic " + btoa(binary);
  }

  function ApiError(status, message) {
    this.status = status;
    this.message = message;
  }

  // fetch with the credentials; resolves with the JSON body of a 2xx answer, rejects
  // with an ApiError carrying the server's {"error": ...} text otherwise.
  function api(method, path, body, credentials) {
    var headers = {
      "Authorization": credentials || auth || "",
      "X-Requested-With": "fetch",
      "Accept": "application/json"
    };
    var init = {method: method, headers: headers, cache: "no-store",
                credentials: "omit", redirect: "error"};
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(API + path, init).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = JSON.parse(text); } catch (e) { data = null; }
        if (response.ok && data !== null) return data;
        var message = data && typeof data.error === "string" ? data.error
          : "HTTP " + response.status + " " + (response.statusText || "error");
        if (response.status === 429) {
          var wait = response.headers.get("Retry-After");
          message += wait ? " (try again in " + wait + " s)" : " (try again later)";
        }
        throw new ApiError(response.status, message);
      });
    }, function () {
      throw new ApiError(0, "The server cannot be reached; check your connection.");
    });
  }

  function failed(where) {
    return function (err) {
      if (!(err instanceof ApiError)) err = new ApiError(0, String(err));
      if (err.status === 401 && auth) {
        logout();
        show($("login-error"), err.message);
        return;
      }
      show(where, err.message);
    };
  }

  // -- logging in and out ----------------------------------------------------------------
  function login(event) {
    event.preventDefault();
    var user = $("username").value;
    var credentials = basic(user, $("password").value);
    var button = $("login-button");
    button.disabled = true;
    show($("login-error"), "");
    api("GET", "balance", undefined, credentials).then(function (data) {
      auth = credentials;
      $("password").value = "";
      $("who").textContent = user;
      $("login-panel").hidden = true;
      $("account").hidden = false;
      $("app").hidden = false;
      showBalance(data);
      $("anum").focus();
    }, function (err) {
      show($("login-error"), err instanceof ApiError ? err.message : String(err));
    }).then(function () { button.disabled = false; });
  }

  function logout() {
    auth = null;
    stopWatching();
    $("password").value = "";
    $("who").textContent = "";
    $("balance").textContent = "…";
    show($("error"), "");
    show($("login-error"), "");
    $("callback-panel").hidden = true;
    $("app").hidden = true;
    $("account").hidden = true;
    $("login-panel").hidden = false;
    $("password").focus();
  }

  // -- balance ---------------------------------------------------------------------------
  function showBalance(data) {
    $("balance").textContent = String(data.balance);
  }

  function refreshBalance() {
    if (!auth) return;
    api("GET", "balance").then(showBalance, failed($("error")));
  }

  // -- requesting a call -----------------------------------------------------------------
  function mode() {
    return $("mode-p2p").checked ? "p2p" : "callback";
  }

  function modeChanged() {
    var p2p = mode() === "p2p";
    $("bnum").required = p2p;
    $("bnum-label").firstChild.textContent = p2p ? "Second phone " : "Destination ";
    $("bnum-hint").textContent = p2p ? "(required)"
      : "(optional: otherwise you are asked on the call)";
    $("mode-help").textContent = p2p
      ? "We call your number first, then the second phone, and connect the two."
      : "We call your number; when you answer, you are connected to the destination.";
    $("call-button").textContent = p2p ? "Connect the two phones" : "Call me back";
  }

  function request(event) {
    event.preventDefault();
    var anum = $("anum").value.trim();
    var bnum = $("bnum").value.trim();
    show($("error"), "");
    if (!anum) { show($("error"), "Enter your number."); return; }
    if (mode() === "p2p" && !bnum) {
      show($("error"), "Enter the second phone's number.");
      return;
    }
    var body = {anum: anum};
    if (bnum) body.bnum = bnum;
    var button = $("call-button");
    button.disabled = true;
    api("POST", "callbacks", body).then(function (data) {
      watch(data.id, {id: data.id, anum: anum, bnum: bnum, status: data.status,
                      reason: "", updated: null});
    }, failed($("error"))).then(function () { button.disabled = false; });
  }

  // -- watching a callback ---------------------------------------------------------------
  function stopWatching() {
    if (watching && watching.timer) clearTimeout(watching.timer);
    watching = null;
  }

  function watch(id, first) {
    stopWatching();
    watching = {id: id, timer: null};
    $("callback-panel").hidden = false;
    render(first);
    schedule(watching);
  }

  function schedule(w) {
    w.timer = setTimeout(function () { poll(w); }, POLL_MS);
  }

  function poll(w) {
    api("GET", "callbacks/" + encodeURIComponent(w.id)).then(function (data) {
      if (watching !== w) return;
      render(data);
      if (FINAL.indexOf(data.status) >= 0) {
        $("cb-watch").textContent = "";
        stopWatching();
        refreshBalance();
      } else {
        schedule(w);
      }
    }, function (err) {
      if (watching !== w) return;
      failed($("error"))(err);
      if (watching !== w) return; // logged out on 401
      if (err.status === 404) {
        stopWatching();
        $("cb-watch").textContent = "";
      } else {
        $("cb-watch").textContent = "Retrying…";
        schedule(w); // 503, a lost connection: try again
      }
    });
  }

  function render(cb) {
    var status = String(cb.status);
    $("cb-id").textContent = "#" + cb.id;
    $("cb-status").textContent = status;
    $("cb-status").setAttribute("data-status", status);
    $("cb-meaning").textContent = MEANING[status] || "";
    $("cb-anum").textContent = cb.anum || "–";
    $("cb-bnum").textContent = cb.bnum || "asked on the call";
    $("cb-reason").textContent = cb.reason || "–";
    $("cb-updated").textContent = cb.updated
      ? new Date(cb.updated * 1000).toLocaleTimeString() : "–";
    $("cb-watch").textContent = FINAL.indexOf(status) >= 0 ? "" : "Watching for changes…";
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", logout);
    $("refresh").addEventListener("click", refreshBalance);
    $("call-form").addEventListener("submit", request);
    $("mode-callback").addEventListener("change", modeChanged);
    $("mode-p2p").addEventListener("change", modeChanged);
    modeChanged();
  });
})();
