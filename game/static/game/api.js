/* NuxTest — small fetch helpers shared by every page (no framework, no build step).
 *
 * Exposes window.NuxTest with:
 *   csrfToken()            the CSRF token (csrftoken cookie, else the page's hidden input)
 *   getJSON(url)           GET, resolves to the parsed JSON body, rejects with ApiError
 *   postJSON(url, body)    POST a JSON body with X-CSRFToken, same-origin credentials
 *   ApiError               {status, detail, field, data}: `detail` is the server's message
 *   el(tag, attrs, ...kids) tiny DOM builder (text children are escaped: textContent)
 *   readJSONScript(id)     the value of a {{ value|json_script:"id" }} element
 */
(function () {
  'use strict';

  function readCookie(name) {
    const prefix = name + '=';
    for (const part of document.cookie ? document.cookie.split(';') : []) {
      const item = part.trim();
      if (item.startsWith(prefix)) {
        return decodeURIComponent(item.slice(prefix.length));
      }
    }
    return null;
  }

  function csrfToken() {
    const fromCookie = readCookie('csrftoken');
    if (fromCookie) return fromCookie;
    const input = document.querySelector('input[name="csrfmiddlewaretoken"]');
    return input ? input.value : '';
  }

  class ApiError extends Error {
    constructor(status, detail, data) {
      super(detail);
      this.name = 'ApiError';
      this.status = status;
      this.detail = detail;
      this.field = data && typeof data === 'object' ? data.field || null : null;
      this.data = data;
    }
  }

  function describeStatus(status) {
    switch (status) {
      case 0: return 'the server could not be reached';
      case 400: return 'the request was refused';
      case 401: return 'please log in again';
      case 403: return 'not allowed (try reloading the page)';
      case 404: return 'not found';
      case 429: return 'too many requests: wait a moment and try again';
      default: return status >= 500 ? 'the server failed, try again' : `request failed (HTTP ${status})`;
    }
  }

  async function request(url, options) {
    let response;
    try {
      response = await fetch(url, Object.assign({ credentials: 'same-origin' }, options));
    } catch (err) {
      throw new ApiError(0, describeStatus(0), null);
    }
    let data = null;
    const type = response.headers.get('Content-Type') || '';
    if (type.includes('json')) {
      try {
        data = await response.json();
      } catch (err) {
        data = null;
      }
    }
    if (!response.ok) {
      let detail = data && typeof data === 'object' && data.detail != null ? data.detail : null;
      if (detail !== null && typeof detail !== 'string') detail = JSON.stringify(detail);
      throw new ApiError(response.status, detail || describeStatus(response.status), data);
    }
    return data;
  }

  function getJSON(url) {
    return request(url, { method: 'GET', headers: { Accept: 'application/json' } });
  }

  function postJSON(url, body) {
    return request(url, {
      method: 'POST',
      headers: {
        Accept: 'application/json',
        'Content-Type': 'application/json',
        'X-CSRFToken': csrfToken(),
      },
      body: JSON.stringify(body === undefined ? {} : body),
    });
  }

  function el(tag, attrs) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [key, value] of Object.entries(attrs)) {
        if (value === null || value === undefined || value === false) continue;
        if (key === 'class') node.className = value;
        else if (key === 'text') node.textContent = value;
        else if (key === 'dataset') Object.assign(node.dataset, value);
        else node.setAttribute(key, value === true ? '' : String(value));
      }
    }
    for (let i = 2; i < arguments.length; i += 1) {
      const kid = arguments[i];
      if (kid === null || kid === undefined || kid === false) continue;
      node.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return node;
  }

  function readJSONScript(id) {
    const node = document.getElementById(id);
    if (!node) return null;
    try {
      return JSON.parse(node.textContent);
    } catch (err) {
      return null;
    }
  }

  window.NuxTest = Object.freeze({ csrfToken, getJSON, postJSON, ApiError, el, readJSONScript });
})();
