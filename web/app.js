/* The netdisk page: signs in, walks folders (breadcrumbs, the folder in
 * the address's #fragment), uploads files and whole folders in verified
 * pieces that resume at the server's offset, makes folders, downloads,
 * renames, moves, deletes. It talks only to its own origin
 * (docs/HTTP.md). */
(function () {
  'use strict';

  var MIB = 1024 * 1024;
  /** Bytes per upload request: 8 MiB, more for files over 128 MiB (each
   * piece makes the server hash what it holds again), at most 64 MiB. */
  function pieceFor(size) {
    return Math.min(64 * MIB, Math.max(8 * MIB, Math.ceil(size / 16 / MIB) * MIB));
  }
  /** Bytes read at a time to hash what the server already holds. */
  var READ = 8 * MIB;

  var state = { user: null, csrf: null, registration: false, cwd: '', files: [], folders: [], sort: 'name', desc: false };
  var $ = function (id) { return document.getElementById(id); };

  function ApiError(status, code, message, body) {
    this.status = status;
    this.code = code;
    this.message = message;
    this.body = body;
  }
  ApiError.prototype = Object.create(Error.prototype);

  function headers(json) {
    var h = { 'X-Netdisk-CSRF': state.csrf || 'sign-in' };
    if (json) h['Content-Type'] = 'application/json';
    return h;
  }

  async function api(method, path, body) {
    var res = await fetch(path, {
      method: method,
      headers: headers(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store'
    });
    var data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) {
      var err = new ApiError(res.status, data && data.error || 'HTTP_' + res.status,
        data && data.message || res.statusText, data);
      if (res.status === 401 && state.user && path !== '/api/login') signedOut('Your session ended; sign in again.');
      throw err;
    }
    return data;
  }

  function say(text, info) {
    var m = $('message');
    m.textContent = text;
    m.className = info ? 'info' : '';
    m.hidden = !text;
  }

  /** What each error code means, in words. */
  var WORDS = {
    AUTH_FAILED: 'Wrong user name or password.',
    NOT_LOGGED_IN: 'You are not signed in.',
    USER_EXISTS: 'That user name is taken; choose another.',
    REGISTRATION_CLOSED: 'This server is closed to registration; ask its admin for an account.',
    NOT_FOUND: 'There is no such file or folder.',
    EXISTS: 'A file or folder of that name is already there.',
    NOT_A_FOLDER: 'A part of that path is a file, not a folder.',
    IS_A_FOLDER: 'That is a folder, not a file.',
    NOT_EMPTY: 'The folder is not empty.',
    LOCKED: 'Another upload of this file is in progress.',
    CHECKSUM_MISMATCH: 'The upload arrived damaged; try again.',
    QUOTA_EXCEEDED: 'Not enough space left in your quota.',
    TIMEOUT: 'The server gave up waiting; try again.',
    BUSY: 'The server is busy; try again in a moment.',
    INTERNAL: 'The server had an internal error.',
    HTTP_413: 'That request is too large for the server.'
  };
  /** Codes whose message from the server says more than the code: it is
   * shown (a limit, the figures of a quota, when to try again). */
  var TOLD = { RATE_LIMITED: 1, INVALID_NAME: 1, WEAK_PASSWORD: 1, QUOTA_EXCEEDED: 1, BAD_REQUEST: 1, BUSY: 1 };

  /** `text` as a sentence: a capital first, a full stop last. */
  function sentence(text) {
    text = String(text || '').trim();
    if (!text) return '';
    text = text.charAt(0).toUpperCase() + text.slice(1);
    return /[.!?]$/.test(text) ? text : text + '.';
  }

  function describe(err) {
    if (err instanceof ApiError) {
      if (TOLD[err.code] && err.message) return sentence(err.message);
      if (WORDS[err.code]) return WORDS[err.code];
      return sentence(err.message) || 'The server refused (' + err.status + ').';
    }
    return sentence(String(err && err.message || err));
  }

  /** A path in a URL: each component encoded, the '/'s kept. */
  function encPath(p) { return p.split('/').map(encodeURIComponent).join('/'); }
  /** `name` inside folder `dir` ('' is Home). */
  function join(dir, name) { return dir ? dir + '/' + name : name; }
  function parentOf(p) { var i = p.lastIndexOf('/'); return i < 0 ? '' : p.slice(0, i); }
  function leafOf(p) { return p.slice(p.lastIndexOf('/') + 1); }
  function where(dir) { return dir ? dir : 'Home'; }

  function iec(n) {
    if (n < 1024) return n + ' B';
    var units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    var v = n, i = -1;
    do { v /= 1024; i++; } while (v >= 1024 && i < units.length - 1);
    return v.toFixed(v < 10 ? 2 : 1) + ' ' + units[i];
  }

  function duration(s) {
    if (!isFinite(s)) return '…';
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }

  // --- signing in and out -------------------------------------------

  function showSignIn() {
    $('disk').hidden = true;
    $('who').hidden = true;
    $('sign-in').hidden = false;
    $('register-button').hidden = !state.registration;
    $('user').focus();
  }

  function signedOut(why) {
    state.user = null;
    state.csrf = null;
    showSignIn();
    say(why || '');
  }

  async function signedIn(user, csrf) {
    state.user = user;
    state.csrf = csrf;
    $('sign-in').hidden = true;
    $('who').hidden = false;
    $('user-name').textContent = user;
    $('disk').hidden = false;
    $('password').value = '';
    state.cwd = hashFolder();
    await refresh();
  }

  async function start() {
    try {
      var s = await api('GET', '/api/session');
      state.registration = s.registration;
      if (s.user) await signedIn(s.user, s.csrf);
      else showSignIn();
    } catch (e) {
      say(describe(e));
    }
  }

  $('sign-in-form').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    say('');
    try {
      var r = await api('POST', '/api/login', { user: $('user').value, password: $('password').value });
      await signedIn(r.user, r.csrf);
    } catch (e) {
      say(describe(e));
    }
  });

  $('register-button').addEventListener('click', async function () {
    say('');
    var creds = { user: $('user').value, password: $('password').value };
    try {
      await api('POST', '/api/register', creds);
      var r = await api('POST', '/api/login', creds);
      await signedIn(r.user, r.csrf);
    } catch (e) {
      say(describe(e));
    }
  });

  $('sign-out').addEventListener('click', async function () {
    try { await api('POST', '/api/logout'); } catch (e) { /* gone either way */ }
    signedOut('Signed out.');
    $('message').className = 'info';
  });

  // --- folders and the list ------------------------------------------

  /** The folder named by the address's fragment (`#/a/b`), if any. */
  function hashFolder() {
    var h = window.location.hash;
    if (h.indexOf('#/') !== 0) return '';
    try {
      return h.slice(2).split('/').filter(Boolean).map(decodeURIComponent).join('/');
    } catch (e) {
      return '';
    }
  }

  /** Opens folder `dir`: lists it and keeps it in the address, so that
   * reload, back and forward work. */
  async function open(dir) {
    state.cwd = dir;
    var hash = '#/' + encPath(dir);
    if (window.location.hash !== hash && !(dir === '' && !window.location.hash)) {
      window.history.pushState(null, '', hash);
    }
    $('filter').value = '';
    closeMove();
    await refresh();
  }

  window.addEventListener('popstate', function () {
    if (!state.user) return;
    state.cwd = hashFolder();
    closeMove();
    refresh();
  });

  async function refresh() {
    var dir = state.cwd;
    try {
      var list = await api('GET', '/api/list' + (dir ? '/' + encPath(dir) : ''));
      if (dir !== state.cwd) return;
      state.files = list.files;
      state.folders = list.folders || [];
      render();
      await usage();
    } catch (e) {
      if (!state.user) return;
      if (dir && e instanceof ApiError && (e.code === 'NOT_FOUND' || e.code === 'NOT_A_FOLDER')) {
        say('The folder ' + dir + ' is not there any more; showing ' + where(parentOf(dir)) + '.');
        await open(parentOf(dir));
        return;
      }
      say(describe(e));
    }
  }

  async function usage() {
    var w = await api('GET', '/api/whoami');
    var quota = w.quota;
    var used = $('usage-used'), staged = $('usage-staged');
    // Without a quota there is nothing to fill: no bar, only the words.
    $('usage-bar').hidden = !quota;
    if (quota) {
      used.style.width = Math.min(100, 100 * w.used / quota) + '%';
      staged.style.width = Math.min(100, 100 * w.staged / quota) + '%';
    }
    $('usage-text').textContent = iec(w.used) + ' used in ' + w.files + ' file' + (w.files === 1 ? '' : 's') +
      (w.staged ? ', ' + iec(w.staged) + ' in unfinished uploads' : '') +
      (quota ? ', of ' + iec(quota) : ', no quota');
  }

  function sorted(list, key) {
    var dir = state.desc ? -1 : 1;
    var filter = $('filter').value.trim().toLowerCase();
    return list
      .filter(function (f) { return !filter || f.name.toLowerCase().indexOf(filter) >= 0; })
      .sort(function (a, b) {
        var x = a[key], y = b[key];
        if (x === null || x === undefined) x = '';
        if (y === null || y === undefined) y = '';
        if (x < y) return -dir;
        if (x > y) return dir;
        return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
      });
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function button(cls, text, label, onClick) {
    var b = el('button', cls, text);
    b.type = 'button';
    if (label) b.setAttribute('aria-label', label);
    b.addEventListener('click', onClick);
    return b;
  }

  function crumbs() {
    var ol = $('crumbs');
    ol.textContent = '';
    var parts = state.cwd ? state.cwd.split('/') : [];
    var items = [{ name: 'Home', path: '' }];
    parts.forEach(function (p, i) { items.push({ name: p, path: parts.slice(0, i + 1).join('/') }); });
    items.forEach(function (c, i) {
      var li = el('li');
      if (i === items.length - 1) {
        var here = el('span', 'here', c.name);
        here.setAttribute('aria-current', 'page');
        li.appendChild(here);
      } else {
        li.appendChild(button('crumb', c.name, c.path ? 'Open folder ' + c.path : 'Open Home', function () { open(c.path); }));
      }
      ol.appendChild(li);
    });
    $('drop-target').textContent = where(state.cwd);
    $('caption').textContent = 'Files and folders in ' + where(state.cwd);
    document.title = (state.cwd ? leafOf(state.cwd) + ' — ' : '') + 'netdisk';
  }

  function render() {
    crumbs();
    var body = document.querySelector('#files tbody');
    body.textContent = '';
    var key = state.sort === 'size' || state.sort === 'md5' ? 'name' : state.sort;
    var folders = sorted(state.folders, key);
    var files = sorted(state.files, state.sort);
    folders.forEach(function (d) {
      var full = join(state.cwd, d.name);
      var tr = el('tr', 'folder');
      tr.dataset.name = d.name;
      tr.dataset.kind = 'folder';
      var name = el('td', 'name');
      name.appendChild(button('open', d.name, 'Open folder ' + d.name, function () { open(full); }));
      tr.appendChild(name);
      tr.appendChild(el('td', 'num size', 'folder'));
      tr.appendChild(el('td', 'time', new Date(d.mtime * 1000).toLocaleString()));
      tr.appendChild(el('td', 'md5', ''));
      var actions = el('td', 'actions');
      actions.appendChild(button('plain rename', 'Rename', 'Rename folder ' + d.name, function () { rename(name, d.name); }));
      actions.appendChild(button('plain move', 'Move', 'Move folder ' + d.name, function () { startMove(full, true); }));
      actions.appendChild(button('danger delete', 'Delete', 'Delete folder ' + d.name, function () { removeFolder(full); }));
      tr.appendChild(actions);
      body.appendChild(tr);
    });
    files.forEach(function (f) {
      var full = join(state.cwd, f.name);
      var tr = el('tr', 'file');
      tr.dataset.name = f.name;
      tr.dataset.kind = 'file';
      var name = el('td', 'name');
      name.appendChild(el('span', 'label', f.name));
      tr.appendChild(name);
      var size = el('td', 'num size', iec(f.size));
      size.title = f.size + ' bytes';
      tr.appendChild(size);
      tr.appendChild(el('td', 'time', new Date(f.mtime * 1000).toLocaleString()));
      tr.appendChild(el('td', 'md5', f.md5 || '…'));
      var actions = el('td', 'actions');
      var dl = el('a', 'download', 'Download');
      dl.href = '/api/files/' + encPath(full);
      dl.setAttribute('download', f.name);
      dl.setAttribute('aria-label', 'Download ' + f.name);
      actions.appendChild(dl);
      actions.appendChild(button('plain rename', 'Rename', 'Rename ' + f.name, function () { rename(name, f.name); }));
      actions.appendChild(button('plain move', 'Move', 'Move ' + f.name, function () { startMove(full, false); }));
      actions.appendChild(button('danger delete', 'Delete', 'Delete ' + f.name, function () { remove(full); }));
      tr.appendChild(actions);
      body.appendChild(tr);
    });
    var all = state.folders.length + state.files.length;
    var shown = folders.length + files.length;
    $('empty').hidden = all > 0;
    var counts = plural(state.folders.length, 'folder') + ', ' + plural(state.files.length, 'file');
    $('count').textContent = shown === all ? counts : shown + ' of ' + all + ' shown (' + counts + ')';
    document.querySelectorAll('#files th').forEach(function (th) {
      var b = th.querySelector('button');
      if (!b) return;
      if (b.dataset.sort === state.sort) th.setAttribute('aria-sort', state.desc ? 'descending' : 'ascending');
      else th.removeAttribute('aria-sort');
    });
  }

  function plural(n, what) { return n + ' ' + what + (n === 1 ? '' : 's'); }

  document.querySelectorAll('#files th button').forEach(function (b) {
    b.addEventListener('click', function () {
      if (state.sort === b.dataset.sort) state.desc = !state.desc;
      else { state.sort = b.dataset.sort; state.desc = false; }
      render();
    });
  });
  $('filter').addEventListener('input', render);

  $('mkdir-form').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    var name = $('new-folder').value.trim();
    if (!name) return;
    var full = join(state.cwd, name);
    try {
      await api('POST', '/api/mkdir', { path: full });
      $('new-folder').value = '';
      say('Created folder ' + full + '.', true);
    } catch (e) {
      say(describe(e));
    }
    await refresh();
  });

  function rename(cell, from) {
    var input = el('input', 'rename-input');
    input.value = from;
    input.setAttribute('aria-label', 'New name for ' + from);
    cell.textContent = '';
    cell.appendChild(input);
    input.focus();
    input.select();
    var done = false;
    async function commit() {
      if (done) return;
      done = true;
      var to = input.value;
      if (!to || to === from) { render(); return; }
      try {
        await api('POST', '/api/rename', { from: join(state.cwd, from), to: join(state.cwd, to) });
        say('Renamed ' + from + ' to ' + to + '.', true);
      } catch (e) {
        say(describe(e));
      }
      await refresh();
    }
    input.addEventListener('keydown', function (ev) {
      if (ev.key === 'Enter') { ev.preventDefault(); commit(); }
      if (ev.key === 'Escape') { done = true; render(); }
    });
    input.addEventListener('blur', function () { if (!done) { done = true; render(); } });
  }

  // Moving: a form above the table lists every folder the item can go to.
  var moving = null;

  async function startMove(full, isFolder) {
    var all;
    try {
      all = await api('GET', '/api/list?recursive=true');
    } catch (e) {
      say(describe(e));
      return;
    }
    var from = parentOf(full);
    var targets = [''].concat(all.folders.map(function (d) { return d.name; })).filter(function (d) {
      if (d === from) return false;
      return !isFolder || (d !== full && d.indexOf(full + '/') !== 0);
    });
    var select = $('move-target');
    select.textContent = '';
    targets.forEach(function (d) {
      var o = el('option', '', d ? d : 'Home');
      o.value = d;
      select.appendChild(o);
    });
    moving = full;
    $('move-label').textContent = 'Move ' + (isFolder ? 'folder ' : '') + leafOf(full) + ' to';
    $('move-button').disabled = targets.length === 0;
    $('move-form').hidden = false;
    select.focus();
    if (!targets.length) say('There is no other folder to move ' + leafOf(full) + ' to; create one first.', true);
  }

  function closeMove() {
    moving = null;
    $('move-form').hidden = true;
  }

  $('move-cancel').addEventListener('click', closeMove);
  $('move-form').addEventListener('keydown', function (ev) { if (ev.key === 'Escape') closeMove(); });
  $('move-form').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    if (moving === null) return;
    var from = moving, dest = $('move-target').value;
    var to = join(dest, leafOf(from));
    closeMove();
    try {
      await api('POST', '/api/rename', { from: from, to: to });
      say('Moved ' + from + ' to ' + where(dest) + '.', true);
    } catch (e) {
      say(describe(e));
    }
    await refresh();
  });

  async function remove(full) {
    if (!window.confirm('Delete ' + leafOf(full) + '? This cannot be undone.')) return;
    try {
      await api('DELETE', '/api/files/' + encPath(full));
      say('Deleted ' + full + '.', true);
    } catch (e) {
      say(describe(e));
    }
    await refresh();
  }

  /** Deletes a folder after a confirmation that says what goes with it. */
  async function removeFolder(full) {
    var inside;
    try {
      inside = await api('GET', '/api/list/' + encPath(full) + '?recursive=true');
    } catch (e) {
      say(describe(e));
      await refresh();
      return;
    }
    var files = inside.files.length, folders = (inside.folders || []).length;
    var bytes = inside.files.reduce(function (n, f) { return n + f.size; }, 0);
    var what = files === 0 && folders === 0 ? 'It is empty.'
      : plural(files, 'file') + ' (' + iec(bytes) + ')' + (folders ? ' in ' + plural(folders, 'folder') : '') +
        ' will be deleted with it.';
    if (!window.confirm('Delete the folder ' + full + '? ' + what + ' This cannot be undone.')) return;
    try {
      await api('DELETE', '/api/files/' + encPath(full) + '?recursive=true');
      say('Deleted the folder ' + full + (files ? ' and ' + plural(files, 'file') : '') + '.', true);
    } catch (e) {
      say(describe(e));
    }
    await refresh();
  }

  // --- uploads ------------------------------------------------------

  var queue = [];
  var busy = false;
  var done = 0;

  /** Queues uploads: each `{file, path}`, `path` the whole path on the
   * disk. */
  function enqueue(items) {
    items.forEach(function (it) {
      var f = it.file;
      var li = el('li', 'upload');
      li.dataset.name = it.path;
      li.appendChild(el('div', 'name', it.path));
      var bar = el('progress');
      bar.max = Math.max(1, f.size);
      bar.value = 0;
      bar.setAttribute('aria-label', 'upload of ' + it.path);
      li.appendChild(bar);
      li.appendChild(el('div', 'status', 'waiting'));
      $('uploads').appendChild(li);
      queue.push({ file: f, path: it.path, li: li, bar: bar });
    });
    pump();
  }

  async function pump() {
    if (busy) return;
    busy = true;
    while (queue.length) {
      var job = queue.shift();
      try {
        await upload(job);
      } catch (e) {
        job.li.classList.add('failed');
        status(job, 'failed: ' + describe(e));
        say(job.path + ': ' + describe(e));
      }
      // Files of the folder shown appear one by one; a deep tree is
      // listed again every ten files and at its end.
      done += 1;
      if (!queue.length || parentOf(job.path) === state.cwd || done % 10 === 0) await refresh();
    }
    busy = false;
  }

  function status(job, text) { job.li.querySelector('.status').textContent = text; }

  /** The running MD5 of one upload, kept by a Web Worker (web/hash.js)
   * so that hashing never holds up the page: `hash(blob)` queues bytes,
   * `digest()` answers once all queued before it are hashed. */
  function Hasher() {
    var waiting = [];
    var worker = new Worker('/hash.js');
    var failAll = function (why) {
      while (waiting.length) waiting.shift().reject(new Error(why));
    };
    worker.onmessage = function (e) {
      var w = waiting.shift();
      if (!w) return;
      if (e.data.error) w.reject(new Error('cannot read the file: ' + e.data.error));
      else w.resolve(e.data);
    };
    worker.onerror = function (e) { e.preventDefault(); failAll('the hashing worker failed'); };
    function ask(message) {
      return new Promise(function (resolve, reject) {
        waiting.push({ resolve: resolve, reject: reject });
        worker.postMessage(message);
      });
    }
    this.hash = function (blob) {
      var p = ask({ blob: blob });
      p.catch(function () {}); // seen where the digest is awaited
      return p;
    };
    this.digest = function () { return ask({ digest: true }).then(function (d) { return d.md5; }); };
    this.close = function () { worker.terminate(); failAll('the upload ended'); };
  }

  /** Uploads one file: begins (or resumes) its upload, then sends the
   * rest in pieces while a worker hashes the file (what the server holds
   * first) beside them; the last piece carries the MD5, which the server
   * checks before the file appears. The page reads no byte itself: each
   * piece goes as a slice of the file, and the worker reads its own. */
  async function upload(job) {
    var file = job.file, size = file.size, name = encPath(job.path), piece = pieceFor(size);
    for (var attempt = 0; attempt < 3; attempt++) {
      var began = await api('POST', '/api/uploads/' + name + '?size=' + size);
      var offset = began.offset;
      var md5 = new Hasher();
      try {
        var outcome = await send(job, md5, name, size, piece, offset);
      } finally {
        md5.close();
      }
      if (outcome === 'done') return;
    }
    throw new Error('the upload kept moving under this page; try again');
  }

  /** The pieces of one upload from `offset`: 'done', or 'conflict' if the
   * server's offset moved under the page (another tab, say). */
  async function send(job, md5, name, size, piece, offset) {
    var file = job.file, hashed = [];
    if (offset > 0) {
      job.li.dataset.resumed = String(offset);
      status(job, 'resuming at ' + iec(offset) + ' of ' + iec(size));
      for (var p = 0; p < offset; p += READ) hashed.push(md5.hash(file.slice(p, Math.min(offset, p + READ))));
    }
    var started = performance.now(), first = offset, pos = offset;
    while (true) {
      var end = Math.min(size, pos + piece);
      var blob = file.slice(pos, end);
      hashed.push(md5.hash(blob));
      var last = end === size;
      var url = '/api/uploads/' + name + '?size=' + size + '&offset=' + pos;
      var digest = null;
      if (last) {
        await Promise.all(hashed);
        digest = await md5.digest();
        url += '&md5=' + digest;
      }
      var at = pos;
      var res = await put(url, blob, function (loaded) {
        progress(job, at + loaded, size, first, started, offset);
      });
      if (res.status === 409 && res.body && res.body.error === 'BAD_REQUEST') return 'conflict';
      if (res.status === 201) {
        if (res.body.md5 !== digest) throw new Error('the server stored another MD5');
        job.bar.value = job.bar.max;
        job.li.classList.add('done');
        job.li.dataset.md5 = res.body.md5;
        status(job, 'done: ' + iec(size) + ', MD5 ' + res.body.md5 +
          (offset ? ' (resumed at ' + iec(offset) + ')' : ''));
        return 'done';
      }
      if (res.status !== 200) {
        var b = res.body || {};
        throw new ApiError(res.status, b.error || 'HTTP_' + res.status, b.message || 'upload failed', b);
      }
      pos = res.body.offset;
      if (pos !== end) return 'conflict';
    }
  }

  function progress(job, done, size, first, began, offset) {
    job.bar.value = done;
    var secs = (performance.now() - began) / 1000;
    var rate = secs > 0 ? (done - first) / secs : 0;
    var eta = rate > 0 ? (size - done) / rate : Infinity;
    status(job, iec(done) + ' of ' + iec(size) + ' · ' + iec(Math.round(rate)) + '/s · ' +
      duration(eta) + ' left' + (offset ? ' · resumed at ' + iec(offset) : ''));
  }

  /** One PUT with upload progress (fetch reports none). */
  function put(url, bytes, onProgress) {
    return new Promise(function (resolve, reject) {
      var x = new XMLHttpRequest();
      x.open('PUT', url);
      x.setRequestHeader('X-Netdisk-CSRF', state.csrf || '');
      x.setRequestHeader('Content-Type', 'application/octet-stream');
      x.upload.onprogress = function (ev) { onProgress(ev.loaded); };
      x.onload = function () {
        var body = null;
        try { body = JSON.parse(x.responseText); } catch (e) { body = null; }
        if (x.status === 401) signedOut('Your session ended; sign in again.');
        resolve({ status: x.status, body: body });
      };
      x.onerror = function () { reject(new Error('the connection was lost; pick the file again to resume')); };
      x.send(bytes);
    });
  }

  /** Uploads a tree into the current folder: `files` as `{file, rel}`
   * (`rel` relative to it), `dirs` every folder in it, so that empty ones
   * are made too. Names the server would refuse (a component that starts
   * with '.') are left out, and said so. */
  async function uploadTree(files, dirs) {
    var dir = state.cwd;
    var hidden = function (rel) { return rel.split('/').some(function (c) { return c.charAt(0) === '.'; }); };
    var skipped = files.filter(function (f) { return hidden(f.rel); }).length;
    files = files.filter(function (f) { return !hidden(f.rel); });
    dirs = dirs.filter(function (d) { return !hidden(d); });
    // Folders that hold a file are made when it commits; make the rest.
    var empty = dirs.filter(function (d) {
      var under = d + '/';
      return !files.some(function (f) { return f.rel.indexOf(under) === 0; }) &&
        !dirs.some(function (o) { return o.indexOf(under) === 0; });
    });
    for (var i = 0; i < empty.length; i++) {
      try {
        await api('POST', '/api/mkdir', { path: join(dir, empty[i]) });
      } catch (e) {
        if (!(e instanceof ApiError && e.code === 'EXISTS')) say(join(dir, empty[i]) + ': ' + describe(e));
      }
    }
    if (skipped) say('Left out ' + plural(skipped, 'hidden file') + ': names may not start with a dot.', true);
    if (empty.length) await refresh();
    enqueue(files.map(function (f) { return { file: f.file, path: join(dir, f.rel) }; }));
  }

  $('picker').addEventListener('change', function () {
    var dir = state.cwd;
    enqueue(Array.prototype.map.call($('picker').files, function (f) { return { file: f, path: join(dir, f.name) }; }));
    $('picker').value = '';
  });

  $('folder-picker').addEventListener('change', function () {
    var files = Array.prototype.map.call($('folder-picker').files, function (f) {
      return { file: f, rel: f.webkitRelativePath || f.name };
    });
    var dirs = {};
    files.forEach(function (f) {
      var d = parentOf(f.rel);
      while (d) { dirs[d] = true; d = parentOf(d); }
    });
    $('folder-picker').value = '';
    uploadTree(files, Object.keys(dirs));
  });

  /** Every file and folder under a dropped entry (File System API). */
  async function walk(entry, prefix, out) {
    var rel = prefix + entry.name;
    if (entry.isFile) {
      var file = await new Promise(function (resolve, reject) { entry.file(resolve, reject); });
      out.files.push({ file: file, rel: rel });
    } else if (entry.isDirectory) {
      out.dirs.push(rel);
      var reader = entry.createReader();
      // readEntries answers in batches (of 100 in Chromium) until empty.
      while (true) {
        var batch = await new Promise(function (resolve, reject) { reader.readEntries(resolve, reject); });
        if (!batch.length) break;
        for (var i = 0; i < batch.length; i++) await walk(batch[i], rel + '/', out);
      }
    }
  }

  var drop = $('drop');
  document.addEventListener('dragover', function (ev) {
    if (!state.user) return;
    ev.preventDefault();
    drop.classList.add('over');
  });
  document.addEventListener('dragleave', function (ev) {
    if (ev.relatedTarget === null) drop.classList.remove('over');
  });
  document.addEventListener('drop', async function (ev) {
    drop.classList.remove('over');
    if (!state.user) return;
    ev.preventDefault();
    var dt = ev.dataTransfer;
    if (!dt) return;
    // Entries must be taken while the event lasts.
    var entries = [], loose = [];
    var items = dt.items || [];
    for (var i = 0; i < items.length; i++) {
      if (items[i].kind !== 'file') continue;
      var entry = items[i].webkitGetAsEntry ? items[i].webkitGetAsEntry() : null;
      if (entry) entries.push(entry);
      else if (items[i].getAsFile()) loose.push(items[i].getAsFile());
    }
    if (!items.length) loose = Array.prototype.slice.call(dt.files);
    var out = { files: loose.map(function (f) { return { file: f, rel: f.name }; }), dirs: [] };
    try {
      for (var j = 0; j < entries.length; j++) await walk(entries[j], '', out);
    } catch (e) {
      say('Could not read what was dropped: ' + describe(e));
      return;
    }
    uploadTree(out.files, out.dirs);
  });

  start();
})();
