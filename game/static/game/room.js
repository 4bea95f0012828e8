/* NuxTest — the game page: one WebSocket to /ws/rooms/<CODE>/ (protocol: GAME.md).
 *
 * The `state` frame is the source of truth; broadcast frames carry `seq` and are applied
 * only in order (a gap asks for a fresh `state` with `sync`). The countdown uses the server
 * clock, estimated with ping/pong. Refused connections (4401/4403/4404/4409/4429) are not
 * retried; any other close reconnects with backoff and the next `state` restores the page.
 */
(function () {
  'use strict';

  const { el, getJSON, postJSON, readJSONScript } = window.NuxTest;

  const app = document.getElementById('room-app');
  if (!app) return;

  const CODE = readJSONScript('room-code');
  const MY_ID = readJSONScript('user-id');
  const CATEGORY_NAMES = readJSONScript('category-names') || {};

  const BROADCASTS = new Set([
    'player_joined', 'player_left', 'game_started', 'question', 'round_result', 'game_over',
  ]);
  const FATAL_CLOSES = {
    4403: 'Not allowed: this connection was refused (origin or permission).',
    4404: 'No such room: check the code or the invite link.',
    4409: 'Room full or game already started: you cannot join this room.',
    4429: 'Too many connections: close other tabs of NuxTest and reload this page.',
  };
  const REFUSALS = {
    wrong_round: 'That answer was for another round.',
    round_closed: 'Too late: the round has closed.',
    already_answered: 'You have already answered this round.',
  };
  const REQUEUE_KEY = 'nuxtest-quick-requeue';
  const PING_EVERY_MS = 15000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 5000;
  const SYNC_RETRY_MS = 5000;
  const LETTERS = ['A', 'B', 'C', 'D'];

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'),
    connection: $('connection'),
    settings: $('settings-summary'),
    notice: $('notice'),
    error: $('error'),
    connectingPanel: $('connecting-panel'),
    lobbyPanel: $('lobby-panel'),
    lobbyHint: $('lobby-hint'),
    start: $('start-button'),
    gamePanel: $('game-panel'),
    roundLabel: $('round-label'),
    countdown: $('countdown'),
    countdownBar: $('countdown-bar'),
    roundBar: document.querySelector('#game-panel .round-bar'),
    question: $('question-text'),
    options: Array.from(document.querySelectorAll('#options button.option')),
    answerStatus: $('answer-status'),
    roundResult: $('round-result'),
    finalPanel: $('final-panel'),
    standings: $('standings'),
    abandonedPanel: $('abandoned-panel'),
    players: $('players'),
    grid: $('room-grid'),
    playerCount: $('player-count'),
    inviteBox: $('invite'),
    invite: $('invite-link'),
    copy: $('copy-invite'),
    copyFeedback: $('copy-feedback'),
    announcer: $('announcer'),
    finalTitle: $('final-title'),
    keysToggle: $('keys-toggle'),
  };

  // --- Client-side model of the room --------------------------------------------------------
  const room = {
    known: false, // a `state` has been received
    status: null,
    settings: null,
    host: null,
    quick: false,
    players: [], // [{id, name, connected, score}] in join order
    round: null,
    question: null, // {round, text, options, deadline, open}
    result: null, // the last round_result frame
    nextAt: null, // local estimate of the next question (reveal pause)
    startsAt: null, // a quick-match lobby's start time (server clock), from the state
    standings: null, // from game_over (or rebuilt from the state once finished)
    standingsExact: false,
  };
  const myAnswers = new Map(); // round -> {option: int|null, state: 'pending'|'accepted'|'refused', reason}
  let standingsRequested = false; // the room summary was asked for the finished game's standings

  let ws = null;
  let lastSeq = null;
  let awaitingState = true;
  let syncRequestedAt = 0;
  let offset = 0; // server clock − local clock, ms
  let offsetFromPong = false;
  let pingTimer = null;
  let reconnectTimer = null;
  let backoff = BACKOFF_MIN_MS;
  let fatal = false;
  let leaving = false;
  let errorTimer = null;
  let startPending = false;

  const serverNow = () => Date.now() + offset;
  // Said once by screen readers (a polite live region): never the running countdown itself.
  const announce = (text) => { ui.announcer.textContent = text; };
  const WARN_AT_MS = 5000; // "5 seconds left", in rounds of 10 s or more, to who has not answered
  const playerById = (id) => room.players.find((p) => p.id === id) || null;
  const playerName = (id) => {
    const p = playerById(id);
    return p ? p.name : `player ${id}`;
  };

  // --- Storage of final standings (so that a reload after game_over keeps the table) --------
  const storageKey = `nuxtest:standings:${CODE}`;
  function standingsSave(list) {
    try { sessionStorage.setItem(storageKey, JSON.stringify(list)); } catch (err) { /* private mode */ }
  }
  function standingsLoad() {
    try {
      const raw = sessionStorage.getItem(storageKey);
      return raw ? JSON.parse(raw) : null;
    } catch (err) {
      return null;
    }
  }
  function standingsForget() {
    try { sessionStorage.removeItem(storageKey); } catch (err) { /* ignore */ }
  }

  // --- Connection ---------------------------------------------------------------------------
  function wsUrl() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    return `${scheme}://${location.host}/ws/rooms/${encodeURIComponent(CODE)}/`;
  }

  function send(frame) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  function setConnection(state, text) {
    ui.connection.dataset.state = state;
    ui.connection.textContent = text;
  }

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    if (fatal || leaving) return;
    awaitingState = true;
    let socket;
    try {
      socket = new WebSocket(wsUrl());
    } catch (err) {
      scheduleReconnect();
      return;
    }
    ws = socket;
    socket.addEventListener('open', () => {
      if (ws !== socket) return;
      setConnection('connected', 'connected');
      ping();
      clearInterval(pingTimer);
      pingTimer = setInterval(ping, PING_EVERY_MS);
    });
    socket.addEventListener('message', (event) => {
      if (ws !== socket) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      if (frame && typeof frame === 'object') onFrame(frame);
    });
    socket.addEventListener('close', (event) => {
      if (ws !== socket) return;
      ws = null;
      clearInterval(pingTimer);
      pingTimer = null;
      onClose(event.code);
    });
  }

  function onClose(code) {
    if (leaving) return;
    if (code === 4401) {
      fatal = true;
      setConnection('failed', 'not logged in');
      const next = location.pathname + location.search;
      location.assign(`${app.dataset.loginUrl}?next=${encodeURIComponent(next)}`);
      return;
    }
    if (code === 4409 && !room.known && requeue()) return;
    if (Object.prototype.hasOwnProperty.call(FATAL_CLOSES, code)) {
      fatal = true;
      setConnection('failed', 'disconnected');
      let text = FATAL_CLOSES[code];
      if (code === 4404 && room.known) {
        // The room was there a moment ago: the server lost it (a Redis restarted without its
        // data) or cleaned it up (an ended room expires). A game in progress cannot go on:
        // its question and players are not shown as if it could.
        if (room.status === 'lobby' || room.status === 'playing') {
          text = 'This room no longer exists on the server: the game cannot go on.';
          Object.assign(room, { known: false, status: null, players: [], question: null, result: null });
        } else {
          text = 'This room is gone from the server; its results are in your History.';
        }
      }
      ui.notice.replaceChildren(
        el('strong', null, text), ' ',
        el('a', { href: app.dataset.lobbyUrl }, 'Back to the lobby'),
      );
      ui.notice.dataset.code = String(code);
      ui.notice.hidden = false;
      if (code === 4409) explainRefusal();
      render();
      return;
    }
    scheduleReconnect();
  }

  function requeue() {
    // Quick match placed us here, but the room started before this page connected (4409):
    // ask for another room, a few times at most (the counter lives as long as the tab).
    if (new URLSearchParams(location.search).get('quick') !== '1') return false;
    const tries = Number(sessionStorage.getItem(REQUEUE_KEY) || 0);
    if (tries >= 3) return false;
    sessionStorage.setItem(REQUEUE_KEY, String(tries + 1));
    fatal = true;
    setConnection('reconnecting', 'finding another room…');
    ui.notice.replaceChildren(el('strong', null, 'That room started without you: finding another…'));
    ui.notice.hidden = false;
    postJSON('/api/matchmaking/', {})
      .then((data) => location.replace(`/rooms/${encodeURIComponent(data.code)}/?quick=1`))
      .catch(() => {
        ui.notice.replaceChildren(
          el('strong', null, FATAL_CLOSES[4409]), ' ',
          el('a', { href: app.dataset.lobbyUrl }, 'Back to the lobby'),
        );
      });
    return true;
  }

  async function explainRefusal() {
    // 4409 covers a full room, a started game and an ended one: the summary says which.
    try {
      const summary = await getJSON(`/api/rooms/${encodeURIComponent(CODE)}/`);
      const why = {
        finished: 'This game has ended.',
        abandoned: 'This game was abandoned.',
        playing: 'This game has already started without you.',
        lobby: 'This room is full.',
      }[summary.status];
      if (why) ui.notice.querySelector('strong').textContent = why;
    } catch (err) {
      // Keep the generic message.
    }
  }

  function scheduleReconnect() {
    if (fatal || leaving || reconnectTimer) return;
    setConnection('reconnecting', 'reconnecting…');
    const delay = backoff;
    backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    reconnectTimer = setTimeout(connect, delay);
    render();
  }

  function ping() {
    send({ type: 'ping', t: Date.now() });
  }

  function requestSync() {
    awaitingState = true;
    syncRequestedAt = Date.now();
    send({ type: 'sync' });
  }

  // --- Frames -------------------------------------------------------------------------------
  function onFrame(frame) {
    const type = frame.type;
    if (type === 'state') return applyState(frame);
    if (BROADCASTS.has(type)) return onBroadcast(frame);
    if (type === 'answer_ack') return onAnswerAck(frame);
    if (type === 'pong') return onPong(frame);
    if (type === 'error') return onError(frame);
    return undefined; // unknown frames are ignored
  }

  function onBroadcast(frame) {
    // Before the first `state` of this connection, or while a `sync` is outstanding, the
    // coming `state` covers everything: ignore broadcasts until it arrives.
    if (awaitingState || lastSeq === null) return;
    if (typeof frame.seq !== 'number') return;
    if (frame.seq <= lastSeq) return;
    if (frame.seq !== lastSeq + 1) {
      requestSync();
      return;
    }
    lastSeq = frame.seq;
    switch (frame.type) {
      case 'player_joined': onPlayerJoined(frame); break;
      case 'player_left': onPlayerLeft(frame); break;
      case 'game_started': onGameStarted(frame); break;
      case 'question': onQuestion(frame); break;
      case 'round_result': onRoundResult(frame); break;
      case 'game_over': onGameOver(frame); break;
      default: break;
    }
    render();
  }

  function applyState(s) {
    lastSeq = typeof s.seq === 'number' ? s.seq : 0;
    awaitingState = false;
    backoff = BACKOFF_MIN_MS;
    if (!offsetFromPong && typeof s.server_time === 'number') offset = s.server_time - Date.now();

    const previousStatus = room.status;
    room.known = true;
    sessionStorage.removeItem(REQUEUE_KEY);
    room.status = s.status;
    room.settings = s.settings || room.settings;
    room.host = s.host;
    room.quick = Boolean(s.quick);
    room.players = (s.players || []).map((p) => ({
      id: p.id, name: p.name, connected: Boolean(p.connected), score: p.score || 0,
    }));
    room.round = s.round == null ? null : s.round;

    if (s.question && room.round != null) {
      const q = s.question;
      room.question = {
        round: room.round, text: q.text, options: q.options, deadline: q.deadline, open: true,
      };
      const mine = myAnswers.get(room.round);
      if (q.answered) {
        // The server says which option this player chose (after a reload, or from another tab).
        const option = typeof q.option === 'number' ? q.option : (mine ? mine.option : null);
        if (!mine || mine.state !== 'accepted' || mine.option !== option) {
          myAnswers.set(room.round, { option, state: 'accepted' });
        }
      } else if (mine && (mine.state === 'pending' || mine.reason === 'wrong_round')) {
        myAnswers.delete(room.round); // the answer never counted: the player may answer again
      }
      room.result = null;
      room.nextAt = null;
    } else {
      // No open round: the current one (if any) has closed; we may have missed its result.
      if (room.question && room.question.round === room.round) room.question.open = false;
      else room.question = null;
      if (room.result && room.result.round !== room.round) room.result = null;
      // The state carries the closed round's result: shown after a reload in the reveal pause.
      if (s.result && s.result.round === room.round && !room.result) {
        applyResultTotals(s.result);
        room.result = s.result;
        if (!room.question && Array.isArray(s.result.options)) {
          room.question = {
            round: s.result.round, text: s.result.text, options: s.result.options, deadline: null, open: false,
          };
        }
      }
    }
    room.startsAt = room.status === 'lobby' && typeof s.starts_at === 'number' ? s.starts_at : null;

    if (room.status === 'lobby') {
      room.standings = null;
      room.question = null;
      room.result = null;
    } else if (room.status === 'finished') {
      if (!room.standings) {
        const saved = standingsLoad();
        if (saved) {
          room.standings = saved;
          room.standingsExact = true;
        } else {
          loadStandings();
        }
      }
    }
    if (previousStatus !== room.status) startPending = false;
    render();
  }

  async function loadStandings() {
    // Opened after game_over: the room summary carries its standings (ranks and correct counts).
    if (standingsRequested) return;
    standingsRequested = true;
    let list = null;
    try {
      const summary = await getJSON(`/api/rooms/${encodeURIComponent(CODE)}/`);
      if (summary && Array.isArray(summary.standings)) list = summary.standings;
    } catch (err) {
      // Rebuilt from the state below.
    }
    if (room.standings && room.standingsExact) return; // game_over came meanwhile
    if (list) {
      room.standings = list;
      room.standingsExact = true;
      standingsSave(list);
    } else {
      room.standings = rebuildStandings();
      room.standingsExact = false;
    }
    render();
  }

  function rebuildStandings() {
    // Without game_over or the summary: order by score (ties in join order); `correct` unknown.
    return room.players
      .map((p, index) => ({ p, index }))
      .sort((a, b) => b.p.score - a.p.score || a.index - b.index)
      .map(({ p }, i) => ({ player: p.id, name: p.name, score: p.score, rank: i + 1, correct: null }));
  }

  function onPlayerJoined(frame) {
    const info = frame.player || {};
    const p = playerById(info.id);
    if (p) {
      p.connected = true;
      if (info.name) p.name = info.name;
    } else if (info.id != null) {
      room.players.push({ id: info.id, name: info.name || `player ${info.id}`, connected: true, score: 0 });
    }
    // A quick-match lobby's second member arms its start: the state says when.
    if (room.quick && room.status === 'lobby' && room.startsAt == null && room.players.length >= 2) {
      requestSync();
    }
  }

  function onPlayerLeft(frame) {
    const info = frame.player || {};
    const p = playerById(info.id);
    if (p) p.connected = false;
  }

  function onGameStarted(frame) {
    room.status = 'playing';
    if (room.settings && typeof frame.rounds === 'number') room.settings.rounds = frame.rounds;
    room.round = null;
    room.question = null;
    room.result = null;
    room.standings = null;
    startPending = false;
    myAnswers.clear();
    standingsForget();
    for (const p of room.players) p.score = 0;
  }

  function onQuestion(frame) {
    if (!offsetFromPong && typeof frame.server_time === 'number') offset = frame.server_time - Date.now();
    room.status = 'playing';
    room.round = frame.round;
    room.question = {
      round: frame.round, text: frame.text, options: frame.options, deadline: frame.deadline, open: true,
    };
    room.result = null;
    room.nextAt = null;
    const total = room.settings ? room.settings.rounds : null;
    const seconds = Math.max(0, Math.round((frame.deadline - serverNow()) / 1000));
    announce(`Round ${frame.round}${total ? ` of ${total}` : ''}: ${frame.text} ${seconds} seconds to answer.`);
    // On a small screen the options can start below the fold: bring the round bar (the
    // countdown) and the question into view (once rendered) rather than make the player
    // scroll against the clock.
    requestAnimationFrame(() => {
      const last = ui.options[ui.options.length - 1];
      if (!last || ui.gamePanel.hidden) return;
      // The keyboard player's option went disabled with their answer, or the Start button
      // went away: focus option A, so that Tab, Enter and screen readers start at the answers.
      const active = document.activeElement;
      if (ui.options.includes(active) || !active || active === document.body) {
        ui.options[0].focus({ preventScroll: true });
      }
      const top = ui.roundBar.getBoundingClientRect().top;
      if (top < 0 || last.getBoundingClientRect().bottom > window.innerHeight) {
        ui.roundBar.scrollIntoView({ block: 'start' });
      }
    });
  }

  function applyResultTotals(result) {
    for (const entry of result.results || []) {
      const p = playerById(entry.player);
      if (p && typeof entry.total === 'number') p.score = entry.total;
    }
  }

  function onRoundResult(frame) {
    if (room.question && room.question.round === frame.round) room.question.open = false;
    room.round = frame.round;
    room.result = frame;
    applyResultTotals(frame);
    const last = room.settings && frame.round >= room.settings.rounds;
    room.nextAt = !last && room.settings ? Date.now() + room.settings.reveal_seconds * 1000 : null;
  }

  function onGameOver(frame) {
    room.status = 'finished';
    room.nextAt = null;
    if (room.question) room.question.open = false;
    room.standings = Array.isArray(frame.standings) ? frame.standings : [];
    room.standingsExact = true;
    standingsSave(room.standings);
    for (const entry of room.standings) {
      const p = playerById(entry.player);
      if (p && typeof entry.score === 'number') p.score = entry.score;
    }
    const me = room.standings.find((s) => s.player === MY_ID);
    announce(`Game over.${me ? ` You are ranked ${me.rank} of ${room.standings.length} with ${me.score} points.` : ''}`);
    // Focus left with the disabled options: bring it to the standings and their links.
    requestAnimationFrame(() => {
      const active = document.activeElement;
      if (!ui.finalPanel.hidden && (ui.options.includes(active) || !active || active === document.body)) {
        ui.finalTitle.focus();
      }
    });
  }

  function onAnswerAck(frame) {
    const mine = myAnswers.get(frame.round);
    if (frame.accepted) {
      myAnswers.set(frame.round, { option: mine ? mine.option : null, state: 'accepted' });
    } else if (frame.reason === 'already_answered') {
      // The server holds an earlier answer: keep the round locked.
      myAnswers.set(frame.round, { option: null, state: 'accepted', reason: frame.reason });
    } else {
      // Too late (round_closed): the pick stays shown as the player's, marked as not counted.
      const option = frame.reason === 'round_closed' && mine ? mine.option : null;
      myAnswers.set(frame.round, { option, state: 'refused', reason: frame.reason });
      if (frame.reason === 'wrong_round') requestSync();
    }
    if (!frame.accepted) {
      ui.answerStatus.dataset.state = 'refused';
    }
    render();
  }

  function onPong(frame) {
    const now = Date.now();
    if (typeof frame.server_time !== 'number' || typeof frame.t !== 'number') return;
    if (now - frame.t < 0 || now - frame.t > 60000) return;
    offset = frame.server_time - (frame.t + now) / 2;
    offsetFromPong = true;
  }

  function onError(frame) {
    const code = frame.code || 'error';
    const message = frame.message || '';
    ui.error.replaceChildren(el('strong', null, code), message ? `: ${message}` : '');
    ui.error.dataset.code = code;
    ui.error.hidden = false;
    clearTimeout(errorTimer);
    errorTimer = setTimeout(() => { ui.error.hidden = true; }, 10000);
    if (code === 'not_host' || code === 'not_in_lobby') {
      startPending = false;
      render();
    }
  }

  // --- Actions ------------------------------------------------------------------------------
  function answer(option) {
    const q = room.question;
    if (!q || !q.open || myAnswers.has(q.round) || serverNow() > q.deadline) return;
    if (!send({ type: 'answer', round: q.round, option })) {
      ui.answerStatus.textContent = 'Not connected: your answer was not sent. Reconnecting…';
      return;
    }
    myAnswers.set(q.round, { option, state: 'pending' });
    render();
  }

  ui.options.forEach((button) => {
    button.addEventListener('click', () => answer(Number(button.dataset.option)));
  });

  // Single-key shortcuts can be turned off (WCAG 2.1.4): speech input types words, and
  // "bad" would answer B. The choice is kept in this browser.
  const SHORTCUTS = 'nuxtest.shortcuts';
  try {
    ui.keysToggle.checked = localStorage.getItem(SHORTCUTS) !== 'off';
  } catch (e) { /* storage refused: shortcuts stay on for this page */ }
  ui.keysToggle.addEventListener('change', () => {
    try { localStorage.setItem(SHORTCUTS, ui.keysToggle.checked ? 'on' : 'off'); } catch (e) { /* this page only */ }
  });

  document.addEventListener('keydown', (event) => {
    if (!ui.keysToggle.checked) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target && (target.tagName === 'INPUT' || target.tagName === 'TEXTAREA' || target.isContentEditable)) return;
    const key = event.key.toLowerCase();
    let index = ['1', '2', '3', '4'].indexOf(key);
    if (index < 0) index = ['a', 'b', 'c', 'd'].indexOf(key);
    if (index >= 0 && room.question && room.question.open) {
      event.preventDefault();
      answer(index);
    }
  });

  ui.start.addEventListener('click', () => {
    if (startPending) return;
    if (send({ type: 'start' })) {
      startPending = true;
      render();
      // If nothing comes back (lost frame), let the host try again.
      setTimeout(() => { if (startPending) { startPending = false; render(); } }, 4000);
    }
  });

  // --- Invite link --------------------------------------------------------------------------
  ui.invite.value = `${location.origin}/rooms/${CODE}/`;
  ui.invite.addEventListener('focus', () => ui.invite.select());
  ui.copy.addEventListener('click', async () => {
    let copied = false;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(ui.invite.value);
        copied = true;
      }
    } catch (err) {
      copied = false;
    }
    if (!copied) {
      ui.invite.focus();
      ui.invite.select();
      try { copied = document.execCommand('copy'); } catch (err) { copied = false; }
    }
    ui.copyFeedback.textContent = copied ? 'Copied!' : 'Select the link and copy it.';
    setTimeout(() => { ui.copyFeedback.textContent = ''; }, 2500);
  });

  // --- Rendering ----------------------------------------------------------------------------
  function settingsText(s) {
    if (!s) return '';
    const parts = [
      `${s.rounds} round${s.rounds === 1 ? '' : 's'}`,
      `${s.answer_seconds} s to answer`,
      `${s.reveal_seconds} s pause`,
      `up to ${s.max_players} player${s.max_players === 1 ? '' : 's'}`,
      `category: ${s.category ? CATEGORY_NAMES[s.category] || s.category : 'any'}`,
    ];
    if (room.quick) parts.unshift('quick match');
    return parts.join(' · ');
  }

  function render() {
    const status = room.status;
    const text = status || (fatal ? 'unavailable' : 'connecting');
    ui.status.textContent = text;
    ui.status.dataset.status = status || '';
    document.title = `Room ${CODE}${status ? ` (${status})` : ''} · NuxTest`;
    ui.settings.textContent = settingsText(room.settings);

    const isHost = MY_ID != null && room.host === MY_ID;
    // Only the host starts the game; the others are told when the host has left the lobby.
    const hostPlayer = room.host == null ? null : playerById(room.host);
    const hostAway = room.host != null && !isHost && Boolean(hostPlayer) && !hostPlayer.connected;
    ui.grid.hidden = fatal && !room.known;
    ui.connectingPanel.hidden = room.known || fatal;
    ui.lobbyPanel.hidden = !(room.known && status === 'lobby');
    ui.gamePanel.hidden = !(room.known && (status === 'playing' || (status === 'finished' && room.result)));
    ui.finalPanel.hidden = !(room.known && status === 'finished');
    ui.abandonedPanel.hidden = !(room.known && status === 'abandoned');
    ui.gamePanel.classList.toggle('is-over', status === 'finished');
    // Nothing to invite anyone to once the game has started, or from a room this player cannot enter.
    ui.inviteBox.hidden = !(room.known && status === 'lobby' && !fatal);

    ui.start.hidden = !(isHost && status === 'lobby' && !fatal);
    ui.start.disabled = startPending || !ws || ws.readyState !== WebSocket.OPEN;
    ui.start.textContent = startPending ? 'Starting…' : 'Start game';
    renderLobbyHint(isHost, hostAway);
    renderPlayers();
    renderQuestion();
    renderResult();
    renderStandings();
    tick();
  }

  function renderLobbyHint(isHost, hostAway = false) {
    const count = room.players.length;
    const max = room.settings ? room.settings.max_players : null;
    const seats = max ? ` (${count} / ${max})` : '';
    let hint;
    if (room.quick) {
      const left = room.startsAt == null ? null : Math.max(0, Math.ceil((room.startsAt - serverNow()) / 1000));
      hint = left == null
        ? `Quick match${seats}: the game starts by itself 5 s after a second player joins, or as soon as the room is full.`
        : `Quick match${seats}: starting in ${left} s, or as soon as the room is full.`;
    } else if (isHost) {
      hint = `You are the host${seats}. Share the invite link, then start when everyone is in.`;
    } else if (hostAway) {
      hint = `${playerName(room.host)}, the host, has left${seats}: the game starts when they come back and start it (or create a room of your own).`;
    } else {
      const host = room.host != null ? playerName(room.host) : 'the host';
      hint = `Waiting for ${host} to start the game${seats}…`;
    }
    ui.lobbyHint.textContent = hint;
  }

  // A player's name in a table cell: wrapped, two lines at most, the whole of it as the title.
  const nameText = (name) => el('span', { class: 'name-text', title: name }, name);

  function renderPlayers() {
    const items = room.players.map((p) => {
      const classes = ['player', p.connected ? 'connected' : 'disconnected'];
      if (p.id === room.host) classes.push('host');
      if (p.id === MY_ID) classes.push('me');
      return el('li', { class: classes.join(' '), dataset: { playerId: String(p.id), connected: String(p.connected) } },
        el('span', { class: 'conn', title: p.connected ? 'connected' : 'disconnected' },
          el('span', { class: 'visually-hidden' }, p.connected ? 'online' : 'offline')),
        el('span', { class: 'player-main' },
          el('span', { class: 'player-name', title: p.name }, p.name),
          p.id === room.host ? el('span', { class: 'badge badge-host', title: 'host' }, 'host') : null,
          p.id === MY_ID ? el('span', { class: 'badge badge-me' }, 'you') : null,
          p.connected ? null : el('span', { class: 'badge badge-away' }, 'away')),
        el('span', { class: 'player-score' }, String(p.score)),
      );
    });
    ui.players.replaceChildren(...items);
    const max = room.settings ? room.settings.max_players : null;
    ui.playerCount.textContent = room.known ? `${room.players.length}${max ? ` / ${max}` : ''}` : '';
  }

  function roundOpenLocally(q) {
    return Boolean(q && q.open && serverNow() <= q.deadline);
  }

  function renderQuestion() {
    const q = room.question;
    const total = room.settings ? room.settings.rounds : null;
    const roundNo = q ? q.round : room.round;
    ui.roundLabel.textContent = roundNo != null ? `Round ${roundNo}${total ? ` / ${total}` : ''}` : '';

    if (!q) {
      ui.question.textContent = room.status === 'playing' ? 'Get ready…' : '';
      ui.options.forEach((b) => {
        b.textContent = '';
        b.disabled = true;
        b.className = 'option';
        b.hidden = true;
      });
      ui.answerStatus.textContent = room.status === 'playing' ? 'The next question is on its way.' : '';
      return;
    }
    ui.question.textContent = q.text;
    const mine = myAnswers.get(q.round);
    const result = room.result && room.result.round === q.round ? room.result : null;
    const open = roundOpenLocally(q) && !result;
    const locked = !open || Boolean(mine);
    const entry = result ? (result.results || []).find((r) => r.player === MY_ID) : null;
    // Sent before the deadline but received after the close: the result went out without it
    // (and the answer_ack, if it came, said round_closed). Still the player's pick, not counted.
    const late = Boolean(mine && mine.option != null && !(entry && entry.option != null)
      && ((result && mine.state === 'pending') || (mine.state === 'refused' && mine.reason === 'round_closed')));

    ui.options.forEach((b, i) => {
      b.hidden = false;
      b.textContent = q.options && q.options[i] != null ? q.options[i] : '';
      b.disabled = locked;
      b.classList.toggle('chosen', Boolean(mine && mine.option === i));
      b.classList.toggle('pending', Boolean(mine && mine.option === i && mine.state === 'pending'));
      b.classList.toggle('late', Boolean(late && mine.option === i));
      b.classList.toggle('correct', Boolean(result && result.correct_option === i));
      b.classList.toggle('wrong', Boolean(result && !late && mine && mine.option === i && result.correct_option !== i));
      b.classList.toggle('dimmed', Boolean(result && result.correct_option !== i && !(mine && mine.option === i)));
      b.setAttribute('aria-pressed', String(Boolean(mine && mine.option === i)));
    });

    let message = '';
    let state = '';
    if (result) {
      // The option's text too: a screen reader hears this, and a letter alone asks the
      // player to remember which option it was.
      const correctText = q.options ? q.options[result.correct_option] : null;
      const letter = (LETTERS[result.correct_option] || '?') + (correctText != null ? `, “${correctText}”` : '');
      if (late) {
        message = `Too late: your answer (${LETTERS[mine.option]}) arrived after the round closed and did not count. The answer was ${letter}.`;
        state = 'late';
      } else if (entry && entry.correct) {
        message = `Correct! +${entry.points} points.`;
        state = 'correct';
      } else if (entry && entry.option != null) {
        message = `Wrong: the answer was ${letter}.`;
        state = 'wrong';
      } else {
        message = `No answer this round: the answer was ${letter}.`;
        state = 'none';
      }
    } else if (mine && mine.state === 'pending') {
      message = 'Sending your answer…';
      state = 'pending';
    } else if (mine && mine.state === 'accepted') {
      message = mine.reason ? REFUSALS[mine.reason] : 'Answer locked in: waiting for the others…';
      state = 'accepted';
    } else if (mine && mine.state === 'refused') {
      message = REFUSALS[mine.reason] || `Answer refused (${mine.reason || 'unknown reason'}).`;
      state = 'refused';
    } else if (!q.open || !roundOpenLocally(q)) {
      message = 'Time is up!';
      state = 'timeout';
    }
    ui.answerStatus.textContent = message;
    ui.answerStatus.dataset.state = state;
  }

  function renderResult() {
    const result = room.result;
    if (!result) {
      ui.roundResult.hidden = true;
      ui.roundResult.replaceChildren();
      return;
    }
    const q = room.question && room.question.round === result.round ? room.question : null;
    const letter = LETTERS[result.correct_option] || '?';
    const correctText = q && q.options ? q.options[result.correct_option] : null;
    const rows = (result.results || []).map((r) => {
      const pick = r.option == null ? '—' : LETTERS[r.option] || String(r.option);
      const cls = r.option == null ? 'none' : r.correct ? 'correct' : 'wrong';
      return el('tr', { class: `result-row ${cls}${r.player === MY_ID ? ' me' : ''}`, dataset: { player: String(r.player) } },
        el('td', { class: 'name' }, nameText(playerName(r.player))),
        el('td', { class: 'pick' }, pick),
        el('td', { class: 'num points' }, r.points > 0 ? `+${r.points}` : '0'),
        el('td', { class: 'num total' }, String(r.total)),
      );
    });
    const table = el('table', { class: 'data-table result-table' },
      el('thead', null, el('tr', null,
        el('th', { scope: 'col' }, 'Player'),
        el('th', { scope: 'col' }, 'Answer'),
        el('th', { scope: 'col', class: 'num' }, 'Points'),
        el('th', { scope: 'col', class: 'num' }, 'Total'))),
      el('tbody', null, ...rows),
    );
    ui.roundResult.replaceChildren(
      el('h3', null, `Round ${result.round} result`),
      el('p', { class: 'correct-answer' }, 'Correct answer: ',
        el('strong', null, correctText != null ? `${letter}. ${correctText}` : letter)),
      el('div', { class: 'table-scroll' }, table),
      el('p', { class: 'muted small next-hint', id: 'next-hint' }),
    );
    ui.roundResult.hidden = false;
  }

  function renderStandings() {
    const body = ui.standings.tBodies[0];
    if (!room.standings) {
      body.replaceChildren();
      return;
    }
    const rows = room.standings.map((s) => el('tr', {
      class: `standing${s.player === MY_ID ? ' me' : ''}${s.rank === 1 && s.score > 0 ? ' winner' : ''}`,
      dataset: { player: String(s.player), rank: String(s.rank) },
    },
    el('td', { class: 'rank' }, String(s.rank)),
    el('td', { class: 'name' }, nameText(s.name || playerName(s.player))),
    el('td', { class: 'num score' }, String(s.score)),
    el('td', { class: 'num correct' }, s.correct == null ? '—' : String(s.correct))));
    body.replaceChildren(...rows);
  }

  // Countdown: the round's deadline against the estimated server clock.
  function tick() {
    const q = room.question;
    if (q && q.open) {
      const remaining = Math.max(0, q.deadline - serverNow());
      ui.countdown.textContent = (remaining / 1000).toFixed(1);
      const span = room.settings ? room.settings.answer_seconds * 1000 : remaining || 1;
      ui.countdownBar.style.width = `${Math.min(100, (100 * remaining) / span)}%`;
      ui.countdown.parentElement.classList.toggle('urgent', remaining > 0 && remaining <= 3000);
      // The deadline passed locally: lock the buttons (the result follows from the server).
      if (remaining <= 0 && ui.options.some((b) => !b.disabled)) renderQuestion();
      if (!q.warned && remaining > 0 && remaining <= WARN_AT_MS && !myAnswers.has(q.round)
          && room.settings && room.settings.answer_seconds * 1000 >= 2 * WARN_AT_MS) {
        q.warned = true;
        announce(`${Math.ceil(remaining / 1000)} seconds left.`);
      }
    } else {
      ui.countdown.textContent = '0.0';
      ui.countdownBar.style.width = '0%';
      ui.countdown.parentElement.classList.remove('urgent');
    }
    if (room.status === 'lobby' && room.quick && room.startsAt != null) renderLobbyHint(false);
    const hint = document.getElementById('next-hint');
    if (hint) {
      if (room.status === 'playing' && room.nextAt) {
        const left = Math.max(0, Math.ceil((room.nextAt - Date.now()) / 1000));
        hint.textContent = left > 0 ? `Next question in ${left} s…` : 'Next question…';
      } else if (room.status === 'finished') {
        hint.textContent = 'That was the last round.';
      } else {
        hint.textContent = '';
      }
    }
  }
  setInterval(tick, 100);

  // --- Page lifecycle -----------------------------------------------------------------------
  setInterval(() => {
    // A `sync` whose `state` never came (lost in a reconnect): ask again.
    if (awaitingState && lastSeq !== null && syncRequestedAt && Date.now() - syncRequestedAt > SYNC_RETRY_MS
        && ws && ws.readyState === WebSocket.OPEN) {
      requestSync();
    }
  }, 1000);

  window.addEventListener('online', () => {
    if (reconnectTimer) {
      backoff = BACKOFF_MIN_MS;
      connect();
    }
  });
  window.addEventListener('pagehide', () => {
    leaving = true;
    const socket = ws;
    ws = null;
    clearInterval(pingTimer);
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    if (socket) socket.close(1000);
  });
  window.addEventListener('pageshow', (event) => {
    if (event.persisted) {
      leaving = false;
      if (!ws && !fatal) connect();
    }
  });

  render();
  connect();
})();
