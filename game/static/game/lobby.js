/* NuxTest — the lobby page: create a room, join one by code, quick match. */
(function () {
  'use strict';

  const { getJSON, postJSON } = window.NuxTest;
  const CODE_RE = /^[ABCDEFGHJKLMNPQRSTUVWXYZ23456789]{6}$/;
  const NUMBER_FIELDS = ['rounds', 'answer_seconds', 'reveal_seconds', 'max_players'];

  function showError(node, message) {
    if (!node) return;
    node.textContent = message || '';
    node.hidden = !message;
  }

  function roomUrl(base, code) {
    return `${base || '/rooms/'}${encodeURIComponent(code)}/`;
  }

  // --- Create a room ---------------------------------------------------------------------
  const createForm = document.getElementById('create-form');
  if (createForm) {
    const errorNode = document.getElementById('create-error');
    const button = document.getElementById('create-button');

    createForm.addEventListener('submit', async (event) => {
      event.preventDefault();
      showError(errorNode, '');
      for (const input of createForm.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');

      const settings = {};
      for (const name of NUMBER_FIELDS) {
        const input = createForm.elements[name];
        const raw = input.value.trim();
        const value = Number(raw);
        if (raw === '' || !Number.isFinite(value)) {
          input.setAttribute('aria-invalid', 'true');
          input.focus();
          const label = input.labels && input.labels[0] ? input.labels[0].textContent.trim() : name;
          showError(errorNode, `${label}: must be a number`);
          return;
        }
        settings[name] = value;
      }
      const category = createForm.elements.category.value;
      settings.category = category === '' ? null : category;

      button.disabled = true;
      button.textContent = 'Creating…';
      try {
        const data = await postJSON(createForm.dataset.apiUrl, settings);
        location.assign(roomUrl(createForm.dataset.roomUrl, data.code));
      } catch (err) {
        const field = err.field && createForm.elements[err.field];
        let message = err.detail || String(err);
        if (field) {
          field.setAttribute('aria-invalid', 'true');
          field.focus();
          // "reveal_seconds: must be …" reads better with the form's own label.
          const label = field.labels && field.labels[0] ? field.labels[0].textContent.trim() : null;
          if (label && message.startsWith(`${err.field}:`)) message = `${label}:${message.slice(err.field.length + 1)}`;
        }
        showError(errorNode, message);
        button.disabled = false;
        button.textContent = 'Create room';
      }
    });
  }

  // --- Join by code ----------------------------------------------------------------------
  const joinForm = document.getElementById('join-form');
  if (joinForm) {
    const errorNode = document.getElementById('join-error');
    joinForm.addEventListener('submit', async (event) => {
      event.preventDefault();
      let raw = joinForm.elements.code.value.trim();
      // Accept an invite link as well as a bare code.
      const fromLink = raw.match(/\/rooms\/([^/?#\s]+)/i);
      if (fromLink) raw = fromLink[1];
      const code = raw.replace(/[\s-]/g, '').toUpperCase();
      if (!CODE_RE.test(code)) {
        showError(errorNode, code ? `“${code}” is not a room code: 6 letters or digits (no 0, 1, I or O)` : 'Enter a room code');
        joinForm.elements.code.focus();
        return;
      }
      showError(errorNode, '');
      // A well-formed code of no room: say so here rather than open a page that says it.
      try {
        await getJSON(roomUrl(joinForm.dataset.apiUrl, code));
      } catch (err) {
        if (err.status === 404) {
          showError(errorNode, `No room has the code “${code}”: check it, or ask for the invite link`);
          joinForm.elements.code.focus();
          return;
        }
        // Anything else: the room page explains it.
      }
      location.assign(roomUrl(joinForm.dataset.roomUrl, code));
    });
  }

  // --- Quick match -----------------------------------------------------------------------
  const quickButton = document.getElementById('quick-match-button');
  if (quickButton) {
    const errorNode = document.getElementById('quick-error');
    quickButton.addEventListener('click', async () => {
      showError(errorNode, '');
      quickButton.disabled = true;
      quickButton.textContent = 'Finding a room…';
      try {
        const data = await postJSON(quickButton.dataset.apiUrl, {});
        // ?quick=1: the room page asks again should the room start before it connects.
        location.assign(`${roomUrl(quickButton.dataset.roomUrl, data.code)}?quick=1`);
      } catch (err) {
        showError(errorNode, err.detail || String(err));
        quickButton.disabled = false;
        quickButton.textContent = 'Quick match';
      }
    });
  }
})();
