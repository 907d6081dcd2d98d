// s3gate's web page: browse buckets and folders, upload files and whole folders, delete.
//
// Plain modern JS, no library. Everything the user sees of an object key goes
// into the page as text (textContent, text nodes, attribute values set with
// setAttribute), never as HTML; the page's CSP allows no inline script anyway.
// Every request is same-origin: the session cookie rides along and the
// browser's Sec-Fetch-Site: same-origin is what the gateway's CSRF check wants.
'use strict';

(() => {
  const STRINGS = JSON.parse(document.getElementById('s3gate-strings').textContent);
  const CONFIG = JSON.parse(document.getElementById('s3gate-config').textContent);
  const $ = (id) => document.getElementById(id);
  const LANG = document.documentElement.lang || 'en';

  // -- small helpers -------------------------------------------------------------
  function t(name, vars) {
    let s = STRINGS[name] ?? name;
    for (const [k, v] of Object.entries(vars || {})) s = s.split(`{${k}}`).join(String(v));
    return s;
  }

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c); // strings become text nodes
    return e;
  }

  const numberFmt = new Intl.NumberFormat(LANG, { maximumFractionDigits: 1 });
  const dateFmt = new Intl.DateTimeFormat(LANG, { dateStyle: 'medium', timeStyle: 'short' });
  const plural = new Intl.PluralRules(LANG);
  const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

  function bytes(n) {
    let i = 0;
    while (n >= 1024 && i < UNITS.length - 1) { n /= 1024; i++; }
    return `${numberFmt.format(n)} ${UNITS[i]}`;
  }

  function duration(seconds) {
    if (!isFinite(seconds) || seconds < 0) return '–';
    seconds = Math.ceil(seconds);
    const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return h ? `${h} h ${m} min` : m ? `${m} min ${s} s` : `${s} s`;
  }

  const encKey = (key) => key.split('/').map(encodeURIComponent).join('/');
  const objectUrl = (bucket, key) => `/files/${encodeURIComponent(bucket)}/${encKey(key)}`;
  const folderHash = (bucket, prefix) => (bucket ? `#/${encodeURIComponent(bucket)}/${encKey(prefix || '')}` : '#/');

  async function api(url, options = {}) {
    const resp = await fetch(url, {
      credentials: 'same-origin',
      ...options,
      headers: { Accept: 'application/json', ...(options.headers || {}) },
    });
    let body = null;
    try { body = await resp.json(); } catch { body = null; }
    if (resp.status === 401) { location.assign(`/login?next=${encodeURIComponent('/' + location.hash)}`); }
    if (!resp.ok) {
      const err = new Error(body?.message || `HTTP ${resp.status}`);
      err.status = resp.status;
      err.body = body;
      throw err;
    }
    return body;
  }

  let statusTimer = 0;
  function say(text, kind = 'info') {
    const s = $('status');
    s.textContent = text;
    s.dataset.kind = kind;
    clearTimeout(statusTimer);
    if (kind === 'info') statusTimer = setTimeout(() => { s.textContent = ''; }, 8000);
  }

  function confirmBox(title, text, okLabel) {
    const d = $('confirm');
    $('confirm-title').textContent = title;
    $('confirm-text').textContent = text;
    $('confirm-ok').textContent = okLabel;
    d.returnValue = '';
    d.showModal();
    $('confirm-cancel').focus();
    return new Promise((resolve) => d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true }));
  }

  // -- where we are: #/BUCKET/PREFIX/ ----------------------------------------------
  function parseHash() {
    const raw = location.hash.replace(/^#\/?/, '');
    if (!raw) return { bucket: '', prefix: '' };
    const slash = raw.indexOf('/');
    try {
      const bucket = decodeURIComponent(slash < 0 ? raw : raw.slice(0, slash));
      let prefix = slash < 0 ? '' : raw.slice(slash + 1).split('/').map(decodeURIComponent).join('/');
      if (prefix && !prefix.endsWith('/')) prefix += '/';
      return { bucket, prefix };
    } catch {
      return { bucket: '', prefix: '' };
    }
  }

  function crumbs(bucket, prefix) {
    const ol = $('crumbs');
    ol.replaceChildren();
    const add = (label, href, current) => {
      const a = el('a', { href, text: label });
      if (current) a.setAttribute('aria-current', 'page');
      ol.append(el('li', {}, a));
    };
    add(t('buckets'), '#/', !bucket);
    if (!bucket) return;
    add(bucket, folderHash(bucket, ''), !prefix);
    const parts = prefix.split('/').filter((p, i, all) => i < all.length - 1);
    parts.forEach((part, i) => add(part, folderHash(bucket, parts.slice(0, i + 1).join('/') + '/'), i === parts.length - 1));
  }

  // -- the bucket list ---------------------------------------------------------------
  async function showBuckets() {
    $('folder-view').hidden = true;
    $('buckets-view').hidden = false;
    crumbs('', '');
    document.title = 's3gate';
    const list = $('bucket-list');
    list.replaceChildren();
    try {
      const body = await api('/files?format=json');
      for (const b of body.buckets) list.append(el('li', {}, el('a', { href: folderHash(b.name, ''), text: b.name })));
      $('buckets-empty').hidden = body.buckets.length > 0;
    } catch (err) {
      say(t('error_listing', { message: err.message }), 'error');
    }
  }

  // -- a folder: loaded page by page, rendered only where visible ----------------------
  // Every row has the same height (--row in app.css, taller at phone width), so
  // the rows in view are found by arithmetic and only those are in the page.
  let ROW_HEIGHT = 44;
  const PAGE = 1000;
  const view = {
    bucket: '', prefix: '', entries: [], shown: [], cursor: null, done: true, loading: false, generation: 0,
    sort: { by: 'name', dir: 1 }, filter: '', rights: null,
  };

  async function showFolder(bucket, prefix) {
    $('buckets-view').hidden = true;
    $('folder-view').hidden = false;
    crumbs(bucket, prefix);
    $('folder-title').textContent = prefix ? `${bucket}/${prefix}` : bucket;
    document.title = `${prefix || bucket} · s3gate`;
    Object.assign(view, {
      bucket, prefix, entries: [], shown: [], cursor: null, done: false, loading: false, rights: null,
    });
    view.generation++;
    document.body.dataset.listing = 'loading';
    $('scroller').scrollTop = 0;
    $('filter').value = view.filter = '';
    render();
    loadRights();
    await loadMore();
  }

  async function loadRights() {
    const generation = view.generation;
    let rights;
    try {
      rights = await api(`/api/rights?bucket=${encodeURIComponent(view.bucket)}&prefix=${encodeURIComponent(view.prefix)}`);
    } catch {
      rights = null; // the buttons stay; the gateway decides and the page shows its answer
    }
    if (generation !== view.generation) return;
    view.rights = rights;
    const can = (a) => !rights || rights.below[a];
    $('dropzone').hidden = !can('write');
    const zip = $('folder-zip');
    zip.hidden = !can('read');
    zip.setAttribute('href', `${objectUrl(view.bucket, view.prefix)}?archive=zip`);
    $('folder-delete').hidden = !view.prefix || !can('delete');
    render();
  }

  async function loadMore() {
    if (view.loading || view.done) return;
    view.loading = true;
    const generation = view.generation;
    const params = new URLSearchParams({ format: 'json', limit: String(PAGE) });
    if (view.cursor) params.set('cursor', view.cursor);
    try {
      const body = await api(`${objectUrl(view.bucket, view.prefix)}?${params}`);
      if (generation !== view.generation) return;
      for (const f of body.folders) view.entries.push({ folder: true, key: f, name: f.slice(view.prefix.length) });
      for (const o of body.objects) {
        view.entries.push({
          folder: false, key: o.key, name: o.key.slice(view.prefix.length), size: o.size, modified: o.last_modified,
        });
      }
      view.cursor = body.next_cursor;
      view.done = !body.next_cursor;
    } catch (err) {
      if (generation !== view.generation) return;
      view.done = true;
      say(t('error_listing', { message: err.message }), 'error');
    } finally {
      if (generation === view.generation) view.loading = false;
    }
    if (generation !== view.generation) return;
    arrange();
    maybeLoadMore();
  }

  function maybeLoadMore() {
    const sc = $('scroller');
    // A sort other than by name, or a filter, needs what is not loaded yet too.
    const wantAll = view.sort.by !== 'name' || view.filter;
    if (!view.done && (wantAll || sc.scrollTop + sc.clientHeight * 3 >= view.shown.length * ROW_HEIGHT)) loadMore();
  }

  function compare(a, b) {
    if (a.folder !== b.folder) return a.folder ? -1 : 1; // folders first, whatever the order
    const { by, dir } = view.sort;
    let d = 0;
    if (by === 'size') d = (a.size || 0) - (b.size || 0);
    else if (by === 'modified') d = (a.modified || '').localeCompare(b.modified || '');
    if (d === 0) d = a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
    return d * dir;
  }

  function arrange() {
    const needle = view.filter.toLocaleLowerCase();
    view.shown = needle ? view.entries.filter((e) => e.name.toLocaleLowerCase().includes(needle)) : view.entries.slice();
    view.shown.sort(compare);
    for (const b of document.querySelectorAll('button.sort')) {
      const on = b.dataset.sort === view.sort.by;
      b.parentElement.setAttribute('aria-sort', on ? (view.sort.dir > 0 ? 'ascending' : 'descending') : 'none');
    }
    render();
  }

  let renderQueued = false;
  function render() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => { renderQueued = false; renderNow(); });
  }

  function renderNow() {
    if ($('folder-view').hidden) return;
    const sc = $('scroller');
    ROW_HEIGHT = parseFloat(getComputedStyle(document.documentElement).getPropertyValue('--row')) || 44;
    const total = view.shown.length;
    $('spacer').style.height = `${total * ROW_HEIGHT}px`;
    const first = Math.max(0, Math.floor(sc.scrollTop / ROW_HEIGHT) - 10);
    const last = Math.min(total, first + Math.ceil((sc.clientHeight || 600) / ROW_HEIGHT) + 20);
    const rows = $('rows');
    rows.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
    const frag = document.createDocumentFragment();
    for (let i = first; i < last; i++) frag.append(row(view.shown[i], i));
    rows.replaceChildren(frag);
    const loaded = view.entries.length;
    const plain = plural.select(loaded) === 'one' ? 'count_one' : 'count';
    $('count').textContent = view.done
      ? t(total === loaded ? plain : 'count_filtered', { shown: total, total: loaded })
      : t('count_more', { shown: total, total: loaded });
    $('empty').hidden = !(view.done && loaded === 0);
    document.body.dataset.listing = view.loading || !view.done ? 'loading' : 'ready';
  }

  function row(entry, index) {
    const can = (a) => !view.rights || view.rights.below[a];
    const r = el('div', { class: `row${entry.folder ? ' folder' : ''}`, role: 'row', 'aria-rowindex': index + 2 });
    const nameCell = el('span', { role: 'cell', class: 'c-name' });
    const actions = el('span', { role: 'cell', class: 'c-act' });
    if (entry.folder) {
      nameCell.append(el('a', { href: folderHash(view.bucket, entry.key), class: 'name', title: entry.name, text: entry.name }));
      if (can('read')) {
        actions.append(el('a', {
          class: 'button small', href: `${objectUrl(view.bucket, entry.key)}?archive=zip`, text: t('zip'),
          'aria-label': t('download_zip_of', { name: entry.name }),
        }));
      }
      if (can('delete')) {
        actions.append(el('button', {
          type: 'button', class: 'small danger', text: t('delete'), 'aria-label': t('delete_named', { name: entry.name }),
          onclick: () => deleteFolder(entry.key),
        }));
      }
      r.append(nameCell, el('span', { role: 'cell', class: 'c-size', text: '—' }), el('span', { role: 'cell', class: 'c-date' }), actions);
      return r;
    }
    const href = objectUrl(view.bucket, entry.key);
    nameCell.append(can('read')
      ? el('a', { href, download: entry.name.split('/').pop(), class: 'name', title: entry.name, text: entry.name })
      : el('span', { class: 'name', title: entry.name, text: entry.name }));
    if (can('read')) {
      actions.append(el('button', {
        type: 'button', class: 'small', text: t('copy_link'), 'aria-label': t('copy_link_of', { name: entry.name }),
        onclick: () => copyLink(entry.key),
      }));
    }
    if (can('delete')) {
      actions.append(el('button', {
        type: 'button', class: 'small danger', text: t('delete'), 'aria-label': t('delete_named', { name: entry.name }),
        onclick: () => deleteObject(entry.key),
      }));
    }
    const when = entry.modified ? new Date(entry.modified) : null;
    r.append(
      nameCell,
      el('span', { role: 'cell', class: 'c-size', text: bytes(entry.size) }),
      el('span', { role: 'cell', class: 'c-date', text: when ? dateFmt.format(when) : '' }),
      actions,
    );
    return r;
  }

  function reload() {
    const { bucket, prefix } = view;
    if (bucket && !$('folder-view').hidden) {
      const top = $('scroller').scrollTop;
      showFolder(bucket, prefix).then(() => { $('scroller').scrollTop = top; render(); });
    }
  }

  // -- object and folder actions ----------------------------------------------------------
  async function copyLink(key) {
    try {
      const body = await api('/api/links', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ bucket: view.bucket, key }),
      });
      $('link-url').value = body.url;
      $('link-expiry').textContent = t('link_expires', { when: dateFmt.format(new Date(body.expires)) });
      $('link').showModal();
      $('link-url').select();
      try { await navigator.clipboard.writeText(body.url); say(t('link_copied')); } catch { /* selected for the user to copy */ }
    } catch (err) {
      say(t('error_link', { message: err.message }), 'error');
    }
  }

  async function deleteObject(key) {
    if (!await confirmBox(t('delete_title'), t('delete_object_question', { name: key }), t('delete'))) return;
    try {
      await api(objectUrl(view.bucket, key), { method: 'DELETE' });
      view.entries = view.entries.filter((e) => e.key !== key);
      arrange();
      say(t('deleted_object', { name: key }));
    } catch (err) {
      say(t('error_delete', { name: key, message: err.message }), 'error');
    }
  }

  async function deleteFolder(prefix) {
    const url = `${objectUrl(view.bucket, prefix)}?recursive=1`;
    let plan;
    try {
      plan = await api(`${url}&dry_run=1`, { method: 'DELETE' });
    } catch (err) {
      say(t('error_delete', { name: prefix, message: err.message }), 'error');
      return;
    }
    let question = t('delete_folder_question', { name: prefix, count: plan.would_delete, size: bytes(plan.bytes) });
    if (plan.refused) question += ' ' + t('delete_folder_refused', { count: plan.refused });
    if (!await confirmBox(t('delete_title'), question, t('delete'))) return;
    let done;
    try {
      done = await api(url, { method: 'DELETE' });
      say(t('deleted_folder', { name: prefix, count: done.deleted }), done.complete ? 'info' : 'error');
    } catch (err) {
      say(t('error_delete', { name: prefix, message: err.message }), 'error');
      return;
    }
    if (prefix === view.prefix) {
      location.hash = folderHash(view.bucket, prefix.split('/').slice(0, -2).map((p) => p + '/').join(''));
    } else if (done.complete) {
      // Dropped here rather than listed again: some stores (SeaweedFS) list an
      // emptied folder for a moment after its last object is gone.
      view.entries = view.entries.filter((e) => e.key !== prefix);
      arrange();
    } else {
      reload();
    }
  }

  // -- uploads ----------------------------------------------------------------------------
  // One queue for the whole page. Each item is sent by a "transport": today one
  // streaming PUT of the whole File (a Blob, which the browser reads from disk as
  // it sends: never whole in memory). A resumable transport (an upload session
  // sending Blob.slice parts) can take over above a size threshold without the
  // queue, progress or error handling changing: it only has to report bytes sent
  // and settle with {ok} / {status, message} like putWhole does.
  const CONCURRENCY = 3;
  const up = {
    items: [], waiting: [], active: new Set(), conflicts: [], conflictChoice: null, nextId: 1,
    samples: [], lastAnnounce: 0, touched: new Set(),
  };

  function enqueue(found, bucket, prefix) {
    for (const { file, rel, error } of found) {
      const item = {
        id: up.nextId++, file, bucket, key: prefix + rel, size: file ? file.size : 0, loaded: 0,
        state: 'queued', reason: '', overwrite: false, transport: null,
      };
      up.items.push(item);
      if (error) fail(item, error);
      else if (CONFIG.uploadLimit && item.size > CONFIG.uploadLimit) fail(item, t('reason_too_large'));
      else up.waiting.push(item);
    }
    $('uploads').hidden = false;
    pump();
    renderUploads();
  }

  function pump() {
    while (up.active.size < CONCURRENCY && up.waiting.length) {
      const item = up.waiting.shift();
      if (item.state !== 'queued') continue;
      start(item);
    }
    renderUploads();
  }

  function start(item) {
    item.state = 'sending';
    item.loaded = 0;
    item.reason = '';
    up.active.add(item);
    const onProgress = (loaded) => { item.loaded = loaded; renderUploads(); };
    item.transport = item.size >= RESUMABLE_FROM || item.session ? putResumable(item, onProgress) : putWhole(item, onProgress);
    item.transport.done.then((result) => {
      up.active.delete(item);
      if (item.state === 'cancelled') { /* already counted */ } else if (result.ok) {
        item.state = 'done';
        item.loaded = item.size;
        up.touched.add(`${item.bucket}/${item.key}`);
      } else if (result.status === 412) {
        conflict(item);
      } else {
        fail(item, reason(result));
      }
      pump();
      if (!up.active.size && !up.waiting.length) finished();
    });
  }

  function putWhole(item, onProgress) {
    const xhr = new XMLHttpRequest();
    const done = new Promise((resolve) => {
      xhr.open('PUT', objectUrl(item.bucket, item.key));
      xhr.setRequestHeader('Accept', 'application/json');
      xhr.setRequestHeader('Content-Type', item.file.type || 'application/octet-stream');
      // RFC 9110 §13.1.2: store only if the key does not exist yet (412 otherwise).
      if (!item.overwrite) xhr.setRequestHeader('If-None-Match', '*');
      xhr.upload.onprogress = (e) => onProgress(e.loaded);
      xhr.onload = () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch { body = null; }
        resolve({ ok: xhr.status >= 200 && xhr.status < 300, status: xhr.status, message: body?.message || '' });
      };
      xhr.onerror = () => resolve({ ok: false, status: 0, message: '' });
      xhr.onabort = () => resolve({ ok: false, status: -1, message: '' });
      xhr.send(item.file);
    });
    return { done, cancel: () => xhr.abort() };
  }

  function reason(result) {
    const extra = result.message ? ` (${result.message})` : '';
    switch (result.status) {
      case 0: return t('reason_network');
      case 401: return t('reason_signed_out');
      case 403: return t('reason_forbidden') + extra;
      case 404: return t('reason_not_found') + extra;
      case 409: case 412: return t('reason_conflict') + extra;
      case 413: return t('reason_too_large') + extra;
      default: return t('reason_other', { status: result.status }) + extra;
    }
  }

  function fail(item, why) {
    item.state = 'failed';
    item.reason = why;
  }

  function conflict(item) {
    if (up.conflictChoice) { resolveConflict(item, up.conflictChoice); return; }
    item.state = 'conflict';
    up.conflicts.push(item);
    if (!$('conflict').open) askConflict();
  }

  function askConflict() {
    const item = up.conflicts.find((i) => i.state === 'conflict');
    if (!item) return;
    const d = $('conflict');
    $('conflict-text').textContent = t('conflict_text', { name: item.key });
    $('conflict-all').checked = false;
    d.returnValue = 'skip';
    d.showModal();
    $('conflict-skip').focus();
    d.addEventListener('close', () => {
      const choice = d.returnValue || 'skip';
      if ($('conflict-all').checked) up.conflictChoice = choice;
      const now = $('conflict-all').checked ? up.conflicts.filter((i) => i.state === 'conflict') : [item];
      for (const i of now) resolveConflict(i, choice);
      up.conflicts = up.conflicts.filter((i) => i.state === 'conflict');
      pump();
      if (up.conflicts.length) askConflict();
      else if (!up.active.size && !up.waiting.length) finished();
    }, { once: true });
  }

  function resolveConflict(item, choice) {
    if (choice === 'overwrite') {
      item.overwrite = true;
    } else if (choice === 'rename') {
      item.key = otherName(item.key, (item.copy = (item.copy || 0) + 1));
    } else {
      item.state = 'skipped';
      return;
    }
    item.state = 'queued';
    up.waiting.unshift(item);
  }

  function otherName(key, n) {
    const slash = key.lastIndexOf('/') + 1;
    const base = key.slice(slash);
    const dot = base.lastIndexOf('.');
    const stem = dot > 0 ? base.slice(0, dot) : base;
    const ext = dot > 0 ? base.slice(dot) : '';
    return `${key.slice(0, slash)}${stem.replace(/ \(\d+\)$/, '')} (${n})${ext}`;
  }

  function cancel(item) {
    if (item.state === 'sending') { item.state = 'cancelled'; item.transport.cancel(); }
    else if (item.state === 'queued' || item.state === 'conflict' || item.state === 'failed') item.state = 'cancelled';
    renderUploads();
  }

  function retry(item) {
    if (item.state !== 'failed' || !item.file) return;
    item.state = 'queued';
    up.waiting.push(item);
    pump();
  }

  function finished() {
    renderUploads();
    if ([...up.touched].some((k) => k.startsWith(`${view.bucket}/${view.prefix}`))) reload();
    up.touched.clear();
  }

  let uploadsQueued = false;
  function renderUploads() {
    if (uploadsQueued) return;
    uploadsQueued = true;
    requestAnimationFrame(() => { uploadsQueued = false; renderUploadsNow(); });
  }

  function tally() {
    const c = { queued: 0, sending: 0, done: 0, failed: 0, conflict: 0, skipped: 0, cancelled: 0 };
    let total = 0, sent = 0;
    for (const i of up.items) {
      c[i.state]++;
      // Bytes that will not be sent (a failure stays out until retried) do not count,
      // or the bar and the time left would never reach the end.
      if (i.state === 'cancelled' || i.state === 'skipped' || i.state === 'failed') continue;
      total += i.size;
      sent += i.state === 'done' ? i.size : i.loaded;
    }
    return { c, total, sent };
  }

  // Speed is what was sent over the last few seconds; time left is what remains
  // at that speed. While every upload in flight is paused (the network is gone)
  // neither is shown, only "paused", and the measure starts afresh once bytes
  // flow again: a pause neither counts down nor drags the speed afterwards. A
  // tick re-renders while busy, so a stalled link shows the speed falling even
  // when no progress event comes.
  const SPEED_WINDOW_MS = 5000;
  let uploadsTicker = 0;

  function renderUploadsNow() {
    const { c, total, sent } = tally();
    const now = performance.now();
    const busy = c.queued + c.sending + c.conflict > 0;
    const paused = up.active.size > 0 && [...up.active].every((i) => i.paused);
    if (paused || !busy) up.samples = [];
    else up.samples.push([now, sent]);
    while (up.samples.length > 2 && now - up.samples[0][0] > SPEED_WINDOW_MS) up.samples.shift();
    const [t0, s0] = up.samples[0] || [now, sent];
    const speed = now > t0 ? Math.max(0, ((sent - s0) * 1000) / (now - t0)) : 0;
    if (busy && !uploadsTicker) uploadsTicker = setInterval(renderUploads, 1000);
    else if (!busy && uploadsTicker) { clearInterval(uploadsTicker); uploadsTicker = 0; }
    const bar = $('overall-bar');
    bar.max = total || 1;
    bar.value = total ? sent : up.items.length ? 1 : 0;
    const parts = [
      t('files_done', { done: c.done, count: up.items.length - c.cancelled - c.skipped }),
      t('bytes_of', { sent: bytes(sent), total: bytes(total) }),
    ];
    if (paused) parts.push(t('paused_retrying'));
    else if (busy) parts.push(t('speed', { speed: bytes(speed) }), t('time_left', { time: duration(speed > 0 ? (total - sent) / speed : Infinity) }));
    if (c.failed) parts.push(t('n_failed', { count: c.failed }));
    if (c.skipped) parts.push(t('n_skipped', { count: c.skipped }));
    $('overall-label').textContent = parts.join(' · ');
    // Screen readers hear the state now and then, not every progress event.
    if (!busy || now - up.lastAnnounce > 10000) {
      const line = busy ? t('announce_progress', { percent: Math.floor((100 * sent) / (total || 1)) })
        : t('announce_done', { done: c.done, failed: c.failed });
      if ($('overall-live').textContent !== line) $('overall-live').textContent = line;
      up.lastAnnounce = now;
    }
    const box = $('uploads');
    Object.assign(box.dataset, {
      state: busy ? 'busy' : 'idle', total: String(up.items.length), done: String(c.done), failed: String(c.failed),
      skipped: String(c.skipped), conflicts: String(c.conflict), queued: String(c.queued + c.sending),
      paused: String(up.items.filter((i) => i.paused).length),
    });
    $('retry-all').hidden = !c.failed;
    $('cancel-all').disabled = !busy;

    const active = $('active-list');
    active.replaceChildren(...[...up.active].map((i) => uploadRow(i)));
    const failed = up.items.filter((i) => i.state === 'failed');
    $('failures').hidden = failed.length === 0;
    const shown = failed.slice(0, 200).map((i) => uploadRow(i));
    if (failed.length > 200) shown.push(el('li', { class: 'hint', text: t('and_more', { count: failed.length - 200 }) }));
    $('failure-list').replaceChildren(...shown);
  }

  function uploadRow(item) {
    const li = el('li', { class: `item ${item.state}` });
    li.append(el('span', { class: 'item-name', title: item.key, text: item.key }));
    if (item.state === 'sending') {
      const pct = item.size ? Math.floor((100 * item.loaded) / item.size) : 0;
      li.append(
        el('progress', { max: item.size || 1, value: item.loaded, 'aria-label': item.key }),
        el('span', { class: 'hint', text: item.paused ? `${pct}% · ${t('paused_retrying')}` : `${pct}%` }),
        el('button', { type: 'button', class: 'small', text: t('cancel'), 'aria-label': t('cancel_named', { name: item.key }), onclick: () => cancel(item) }),
      );
    } else if (item.state === 'failed') {
      li.append(
        el('span', { class: 'reason', text: item.reason }),
        item.file ? el('button', { type: 'button', class: 'small', text: t('retry'), 'aria-label': t('retry_named', { name: item.key }), onclick: () => retry(item) }) : null,
        el('button', { type: 'button', class: 'small', text: t('dismiss'), onclick: () => cancel(item) }),
      );
    }
    return li;
  }

  // -- resumable uploads --------------------------------------------------------------------
  // A file of RESUMABLE_FROM bytes or more goes through an upload session the
  // gateway keeps (POST /api/uploads): Blob.slice parts, a few in flight, each
  // PUT with the session's grant (so an expiring login does not stop it). A
  // failed part pauses the upload; it resumes by itself (backoff, or at once
  // when the browser is back online), asking the gateway which parts S3 holds
  // and sending only the others. After a reload the page lists the unfinished
  // sessions; the same file picked again (name, size, modification time) is
  // matched to its session and only the missing parts go.
  const RESUMABLE_FROM = 64 * 1024 * 1024;
  const PARTS_IN_FLIGHT = 3;
  const unfinished = new Map(); // session id -> session (GET /api/uploads)
  const wakers = new Set();
  window.addEventListener('online', () => { for (const wake of [...wakers]) wake(); });

  const transient = (status) => status === 0 || status === 408 || status === 429 || status >= 500;
  const sameFile = (s, file) => s.name === file.name && s.size === file.size
    && (s.mtime === null || Math.abs(s.mtime * 1000 - file.lastModified) < 1000);

  // fetch() for the session API: never navigates away, a network error is status 0.
  async function call(url, options = {}, grant = '') {
    const headers = { Accept: 'application/json', ...(grant ? { 'X-Upload-Grant': grant } : {}), ...(options.headers || {}) };
    let resp;
    try {
      resp = await fetch(url, { credentials: 'same-origin', ...options, headers });
    } catch {
      throw Object.assign(new Error(''), { status: 0 });
    }
    let body = null;
    try { body = await resp.json(); } catch { body = null; }
    if (!resp.ok) throw Object.assign(new Error(body?.message || ''), { status: resp.status });
    return body;
  }

  function sendPart(url, blob, grant, onProgress, xhrs) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhrs.add(xhr);
      const end = (result) => { xhrs.delete(xhr); resolve(result); };
      xhr.open('PUT', url);
      xhr.setRequestHeader('Accept', 'application/json');
      xhr.setRequestHeader('X-Upload-Grant', grant);
      xhr.upload.onprogress = (e) => onProgress(e.loaded);
      xhr.onload = () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch { body = null; }
        end({ ok: xhr.status >= 200 && xhr.status < 300, status: xhr.status, message: body?.message || '' });
      };
      xhr.onerror = () => end({ ok: false, status: 0, message: '' });
      xhr.onabort = () => end({ ok: false, status: -1, message: '' });
      xhr.send(blob);
    });
  }

  function backoff(attempt) {
    return new Promise((resolve) => {
      const wake = () => { clearTimeout(timer); wakers.delete(wake); resolve(); };
      const timer = setTimeout(wake, Math.min(15000, 300 * 2 ** Math.min(attempt - 1, 6)));
      wakers.add(wake);
    });
  }

  function putResumable(item, onProgress) {
    const xhrs = new Set();
    let cancelled = false;
    let wake = null;

    async function openSession() {
      const match = [...unfinished.values()].find((s) => s.bucket === item.bucket && s.key === item.key && sameFile(s, item.file));
      if (match) return match;
      const headers = { 'Content-Type': 'application/json' };
      if (!item.overwrite) headers['If-None-Match'] = '*'; // RFC 9110 §13.1.2: 412 before a byte is sent
      return call('/api/uploads', {
        method: 'POST', headers,
        body: JSON.stringify({
          bucket: item.bucket, key: item.key, size: item.size, name: item.file.name,
          mtime: item.file.lastModified / 1000, content_type: item.file.type || undefined,
        }),
      });
    }

    async function sendMissing(s) {
      const status = await call(`/api/uploads/${encodeURIComponent(s.id)}`, {}, s.grant);
      const queue = status.missing.slice();
      const inFlight = new Map();
      let finished = status.received;
      let failure = null;
      const report = () => { let n = finished; for (const v of inFlight.values()) n += v; onProgress(n); };
      report();
      const worker = async () => {
        while (queue.length && !failure && !cancelled) {
          const n = queue.shift();
          const start = (n - 1) * s.part_size, end = Math.min(s.size, start + s.part_size);
          inFlight.set(n, 0);
          const url = `/api/uploads/${encodeURIComponent(s.id)}/parts/${n}`;
          const r = await sendPart(url, item.file.slice(start, end), s.grant, (loaded) => { inFlight.set(n, loaded); report(); }, xhrs);
          inFlight.delete(n);
          if (r.ok) finished += end - start;
          else failure = failure || r;
          report();
        }
      };
      await Promise.all(Array.from({ length: PARTS_IN_FLIGHT }, worker));
      if (failure) throw Object.assign(new Error(failure.message), { status: failure.status });
    }

    async function run() {
      let attempt = 0;
      for (;;) {
        if (cancelled) return { ok: false, status: -1, message: '' };
        try {
          if (!item.session) {
            item.session = await openSession();
            unfinished.delete(item.session.id);
            renderUnfinished();
          }
          const s = item.session;
          await sendMissing(s);
          if (cancelled) return { ok: false, status: -1, message: '' };
          const headers = item.overwrite ? {} : { 'If-None-Match': '*' };
          try {
            await call(`/api/uploads/${encodeURIComponent(s.id)}/complete`, { method: 'POST', headers }, s.grant);
          } catch (err) {
            if (err.status === 404 && attempt > 0 && await landed()) { item.session = null; return { ok: true, status: 201 }; }
            throw err;
          }
          item.session = null;
          return { ok: true, status: 201 };
        } catch (err) {
          if (cancelled) return { ok: false, status: -1, message: '' };
          if (err.status === 412 && item.session) {
            // Someone stored the key meanwhile: drop the parts; the conflict dialog decides.
            call(`/api/uploads/${encodeURIComponent(item.session.id)}`, { method: 'DELETE' }, item.session.grant).catch(() => {});
            item.session = null;
          }
          if (err.status === 404 && item.session && attempt < 3) item.session = null; // expired: start afresh
          else if (!transient(err.status) && err.status !== 409) return { ok: false, status: err.status, message: err.message };
          attempt++;
          item.paused = true;
          renderUploads();
          await backoff(attempt);
          item.paused = false;
        }
      }
    }

    // The completion's answer was lost and the session is gone: did the object land?
    async function landed() {
      try {
        const resp = await fetch(objectUrl(item.bucket, item.key), { method: 'HEAD', credentials: 'same-origin' });
        return resp.ok && Number(resp.headers.get('Content-Length')) === item.size;
      } catch { return false; }
    }

    const done = run().catch((err) => ({ ok: false, status: err.status ?? 0, message: err.message || '' }));
    return {
      done,
      cancel: () => {
        cancelled = true;
        for (const xhr of [...xhrs]) xhr.abort();
        for (const w of [...wakers]) w();
        const s = item.session;
        item.session = null;
        if (s) call(`/api/uploads/${encodeURIComponent(s.id)}`, { method: 'DELETE' }, s.grant).catch(() => {});
      },
    };
  }

  async function loadUnfinished() {
    let body;
    try { body = await call('/api/uploads'); } catch { return; }
    const busy = new Set(up.items.map((i) => i.session?.id).filter(Boolean));
    for (const s of body.uploads) if (!busy.has(s.id)) unfinished.set(s.id, s);
    renderUnfinished();
  }

  function renderUnfinished() {
    let box = $('unfinished');
    if (!box) {
      box = el('section', { id: 'unfinished', class: 'uploads', 'aria-labelledby': 'unfinished-title', hidden: true },
        el('h2', { id: 'unfinished-title', text: t('unfinished_title') }),
        el('p', { class: 'hint', text: t('unfinished_help') }),
        el('ul', { id: 'unfinished-list', class: 'queue' }),
        el('input', { id: 'resume-pick', type: 'file', hidden: true, 'aria-label': t('resume') }));
      $('main').prepend(box);
      $('resume-pick').addEventListener('change', (e) => {
        const file = e.target.files[0];
        const s = unfinished.get(e.target.dataset.session);
        e.target.value = '';
        if (file && s) resumeWith(s, file);
      });
    }
    box.hidden = unfinished.size === 0;
    box.dataset.count = String(unfinished.size);
    $('unfinished-list').replaceChildren(...[...unfinished.values()].map((s) => el('li', { class: 'item', 'data-session': s.id },
      el('span', { class: 'item-name', title: `${s.bucket}/${s.key}`, text: `${s.bucket}/${s.key}` }),
      el('span', { class: 'hint', text: `${bytes(s.size)} · ${t('unfinished_expires', { when: dateFmt.format(new Date(s.expires)) })}` }),
      el('button', {
        type: 'button', class: 'small', text: t('resume'), 'aria-label': t('resume_named', { name: s.key }),
        onclick: () => { $('resume-pick').dataset.session = s.id; $('resume-pick').click(); },
      }),
      el('button', {
        type: 'button', class: 'small danger', text: t('discard'), 'aria-label': t('discard_named', { name: s.key }),
        onclick: () => {
          unfinished.delete(s.id);
          renderUnfinished();
          call(`/api/uploads/${encodeURIComponent(s.id)}`, { method: 'DELETE' }, s.grant).catch(() => {});
        },
      }))));
  }

  function resumeWith(s, file) {
    if (!sameFile(s, file)) { say(t('resume_mismatch', { name: file.name }), 'error'); return; }
    unfinished.delete(s.id);
    renderUnfinished();
    const item = {
      id: up.nextId++, file, bucket: s.bucket, key: s.key, size: file.size, loaded: 0,
      state: 'queued', reason: '', overwrite: true, transport: null, session: s,
    };
    up.items.push(item);
    up.waiting.push(item);
    $('uploads').hidden = false;
    pump();
  }

  // Files picked with the two inputs, or dropped.
  function fromInput(input) {
    const found = [...input.files].map((file) => ({ file, rel: file.webkitRelativePath || file.name }));
    input.value = '';
    if (found.length) enqueue(found, view.bucket, view.prefix);
  }

  // A dropped folder is walked here. Chromium's readEntries hands out a
  // directory's entries in batches (of 100): call it until it returns nothing.
  function readAll(reader) {
    return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
  }

  const fileOf = (entry) => new Promise((resolve, reject) => entry.file(resolve, reject));
  // Let the page paint and answer the user between batches: a flood of
  // thousands of entry.file() answers would otherwise starve rendering (seen:
  // a 10,000-file drop froze the page for seconds).
  const breathe = () => (globalThis.scheduler?.yield ? scheduler.yield() : new Promise((r) => setTimeout(r, 0)));

  // Depth first, one directory and one batch (at most 100 entries) at a time.
  async function walk(roots, sink) {
    const stack = roots.map((entry) => [entry, '']).reverse();
    while (stack.length) {
      const [entry, path] = stack.pop();
      if (entry.isFile) {
        await fileBatch([[entry, path]], sink);
        continue;
      }
      if (!entry.isDirectory) continue;
      const reader = entry.createReader();
      const dirs = [];
      for (;;) {
        let batch;
        try { batch = await readAll(reader); } catch (err) {
          sink({ file: null, rel: `${path}${entry.name}/`, error: t('reason_unreadable', { message: err.message || err.name }) });
          break;
        }
        if (!batch.length) break;
        const here = `${path}${entry.name}/`;
        await fileBatch(batch.filter((e) => e.isFile).map((e) => [e, here]), sink);
        for (const d of batch) if (d.isDirectory) dirs.push([d, here]);
        await breathe();
      }
      stack.push(...dirs.reverse());
    }
  }

  async function fileBatch(pairs, sink) {
    for (let at = 0; at < pairs.length; at += 50) {
      const some = pairs.slice(at, at + 50);
      const got = await Promise.allSettled(some.map(([entry]) => fileOf(entry)));
      got.forEach((r, i) => {
        const rel = some[i][1] + some[i][0].name;
        if (r.status === 'fulfilled') sink({ file: r.value, rel });
        else sink({ file: null, rel, error: t('reason_unreadable', { message: r.reason?.message || r.reason?.name || '' }) });
      });
      await breathe();
    }
  }

  async function dropped(entries, loose) {
    const bucket = view.bucket, prefix = view.prefix;
    let batch = loose.map((file) => ({ file, rel: file.name }));
    const flush = () => { if (batch.length) { const b = batch; batch = []; enqueue(b, bucket, prefix); } };
    say(t('reading_folder'));
    const sink = (found) => { batch.push(found); if (batch.length >= 500) flush(); };
    await walk(entries, sink);
    flush();
    say(t('queued_files', { count: up.items.length }));
  }

  function onDrop(e) {
    e.preventDefault();
    $('dropzone').classList.remove('over');
    if ($('folder-view').hidden || $('dropzone').hidden) return;
    const dt = e.dataTransfer;
    const entries = [], loose = [];
    // webkitGetAsEntry only works now, inside the event: the DataTransfer is
    // emptied once the handler returns (HTML's drag data store "protected mode").
    for (const item of dt.items || []) {
      if (item.kind !== 'file') continue;
      const entry = item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
      if (entry) entries.push(entry);
      else { const f = item.getAsFile(); if (f) loose.push(f); }
    }
    if (!entries.length && !loose.length) loose.push(...(dt.files || []));
    dropped(entries, loose);
  }

  // -- wiring -------------------------------------------------------------------------------
  function route() {
    const { bucket, prefix } = parseHash();
    const sw = $('lang-switch');
    sw.setAttribute('href', `?lang=${sw.getAttribute('hreflang')}${location.hash}`);
    if (!bucket) showBuckets();
    else showFolder(bucket, prefix);
  }

  function init() {
    window.addEventListener('hashchange', route);
    $('scroller').addEventListener('scroll', () => { render(); maybeLoadMore(); }, { passive: true });
    window.addEventListener('resize', render);
    $('filter').addEventListener('input', (e) => { view.filter = e.target.value; arrange(); maybeLoadMore(); });
    for (const b of document.querySelectorAll('button.sort')) {
      b.addEventListener('click', () => {
        view.sort = { by: b.dataset.sort, dir: view.sort.by === b.dataset.sort ? -view.sort.dir : 1 };
        arrange();
        maybeLoadMore();
      });
    }
    $('folder-delete').addEventListener('click', () => deleteFolder(view.prefix));

    for (const id of ['pick-files', 'pick-folder']) {
      $(id).addEventListener('change', (e) => fromInput(e.target));
      $(`${id}-button`).addEventListener('click', () => $(id).click());
    }
    const zone = $('dropzone');
    zone.addEventListener('keydown', (e) => {
      if (e.target === zone && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); $('pick-files').click(); }
    });
    // The whole page takes drops: a file let go beside the zone must not make the browser open it instead.
    document.addEventListener('dragover', (e) => {
      e.preventDefault();
      if (e.dataTransfer) e.dataTransfer.dropEffect = $('folder-view').hidden || zone.hidden ? 'none' : 'copy';
      zone.classList.add('over');
    });
    document.addEventListener('dragleave', (e) => { if (!e.relatedTarget) zone.classList.remove('over'); });
    document.addEventListener('drop', onDrop);

    $('cancel-all').addEventListener('click', () => { for (const i of up.items) if (i.state !== 'done' && i.state !== 'failed') cancel(i); });
    $('retry-all').addEventListener('click', () => { for (const i of up.items) retry(i); });
    $('clear-done').addEventListener('click', () => {
      up.items = up.items.filter((i) => ['queued', 'sending', 'conflict', 'failed'].includes(i.state));
      if (!up.items.length) $('uploads').hidden = true;
      renderUploads();
    });
    window.addEventListener('beforeunload', (e) => { if (up.active.size || up.waiting.length) e.preventDefault(); });
    route();
    loadUnfinished();
  }

  init();
})();
