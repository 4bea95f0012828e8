/* NuxTest — the player's own results: /api/me/results/ into #history, newest first. */
(function () {
  'use strict';

  const { getJSON, el } = window.NuxTest;
  const app = document.getElementById('history-app');
  if (!app) return;

  const table = document.getElementById('history');
  const body = table.tBodies[0];
  const errorNode = document.getElementById('history-error');
  const summary = document.getElementById('history-summary');
  const when = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

  function message(text, cls) {
    body.replaceChildren(el('tr', { class: cls }, el('td', { colspan: 6 }, text)));
  }

  function formatDate(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? String(iso) : when.format(date);
  }

  function formatMs(ms) {
    return ms == null ? '—' : `${(ms / 1000).toFixed(2)} s`;
  }

  async function load() {
    try {
      const data = await getJSON(app.dataset.apiUrl);
      const rows = Array.isArray(data) ? data.slice() : [];
      rows.sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at));
      if (!rows.length) {
        message('No games yet: play one from the lobby!', 'empty');
        summary.textContent = '';
        return;
      }
      body.replaceChildren(...rows.map((r) => el('tr', { class: `result${r.rank === 1 ? ' won' : ''}` },
        el('td', { class: 'when' }, el('time', { datetime: r.created_at }, formatDate(r.created_at))),
        el('td', { class: 'room code' }, r.room),
        el('td', { class: 'num rank' }, String(r.rank)),
        el('td', { class: 'num score' }, Number(r.score).toLocaleString()),
        el('td', { class: 'num correct' }, `${r.correct} / ${r.rounds}`),
        el('td', { class: 'num avg' }, formatMs(r.avg_answer_ms)))));
      // A win is first place with points: a game nobody scored in has no winner.
      const wins = rows.filter((r) => r.rank === 1 && r.score > 0).length;
      const total = rows.reduce((sum, r) => sum + (Number(r.score) || 0), 0);
      summary.textContent = `${rows.length >= 100 ? 'Last ' : ''}${rows.length} game${rows.length === 1 ? '' : 's'} · ${wins} win${wins === 1 ? '' : 's'} · ${total.toLocaleString()} points`;
    } catch (err) {
      message('Your games could not be loaded.', 'error');
      errorNode.textContent = err.detail || String(err);
      errorNode.hidden = false;
    } finally {
      table.setAttribute('aria-busy', 'false');
    }
  }

  load();
})();
