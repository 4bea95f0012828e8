/* NuxTest — the leaderboard page: /api/leaderboard/?period=day|week|all into #leaderboard. */
(function () {
  'use strict';

  const { getJSON, el, readJSONScript } = window.NuxTest;
  const app = document.getElementById('leaderboard-app');
  if (!app) return;

  const PERIODS = ['day', 'week', 'all'];
  const table = document.getElementById('leaderboard');
  const body = table.tBodies[0];
  const errorNode = document.getElementById('leaderboard-error');
  const tabs = Array.from(app.querySelectorAll('.tab[data-period]'));
  const panel = document.getElementById('leaderboard-panel');
  const myId = readJSONScript('user-id');
  let current = null;
  let requestNo = 0;

  function message(text, cls) {
    body.replaceChildren(el('tr', { class: cls || 'placeholder' }, el('td', { colspan: 4 }, text)));
  }

  async function load(period, push) {
    if (!PERIODS.includes(period)) period = 'week';
    current = period;
    const mine = ++requestNo;
    for (const tab of tabs) {
      const selected = tab.dataset.period === period;
      tab.setAttribute('aria-selected', String(selected));
      // One tab in the Tab order, the chosen one; the arrow keys move between them.
      tab.tabIndex = selected ? 0 : -1;
      tab.classList.toggle('active', selected);
      if (selected) panel.setAttribute('aria-labelledby', tab.id);
    }
    table.dataset.period = period;
    table.setAttribute('aria-busy', 'true');
    errorNode.hidden = true;
    if (push) {
      const url = new URL(location.href);
      url.searchParams.set('period', period);
      history.replaceState(null, '', url);
    }
    try {
      const data = await getJSON(`${app.dataset.apiUrl}?period=${encodeURIComponent(period)}`);
      if (mine !== requestNo) return; // a newer tab was chosen meanwhile
      const results = (data && data.results) || [];
      if (!results.length) {
        message('No games in this period yet.', 'empty');
      } else {
        body.replaceChildren(...results.map((r) => el('tr', {
          class: `leader${r.player === myId ? ' me' : ''}${r.rank <= 3 ? ` top top-${r.rank}` : ''}`,
          dataset: { player: String(r.player) },
        },
        el('td', { class: 'num rank' }, String(r.rank)),
        el('td', { class: 'name' }, el('span', { class: 'name-text', title: r.name }, r.name)),
        el('td', { class: 'num score' }, Number(r.score).toLocaleString()),
        el('td', { class: 'num games' }, String(r.games)))));
      }
    } catch (err) {
      if (mine !== requestNo) return;
      message('The leaderboard could not be loaded.', 'error');
      errorNode.textContent = err.detail || String(err);
      errorNode.hidden = false;
    } finally {
      if (mine === requestNo) table.setAttribute('aria-busy', 'false');
    }
  }

  for (const tab of tabs) {
    tab.addEventListener('click', () => {
      if (tab.dataset.period !== current) load(tab.dataset.period, true);
    });
  }
  // The tabs pattern of WAI-ARIA: Left/Right (wrapping), Home and End choose a period.
  app.querySelector('[role="tablist"]').addEventListener('keydown', (event) => {
    const at = tabs.indexOf(document.activeElement);
    if (at < 0) return;
    const to = {
      ArrowRight: (at + 1) % tabs.length,
      ArrowLeft: (at + tabs.length - 1) % tabs.length,
      Home: 0,
      End: tabs.length - 1,
    }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    tabs[to].focus();
    if (tabs[to].dataset.period !== current) load(tabs[to].dataset.period, true);
  });
  const initial = new URLSearchParams(location.search).get('period');
  load(PERIODS.includes(initial) ? initial : 'week', false);
})();
