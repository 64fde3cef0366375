/* The netdisk page: signs in, lists, uploads in verified pieces that
 * resume at the server's offset, downloads, renames, deletes. It talks
 * only to its own origin (docs/HTTP.md). */
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

  var state = { user: null, csrf: null, registration: false, files: [], sort: 'name', desc: false };
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

  function describe(err) {
    if (err instanceof ApiError) return err.code + ': ' + err.message;
    return String(err && err.message || err);
  }

  function path(name) { return encodeURIComponent(name); }

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

  // --- the list -----------------------------------------------------

  async function refresh() {
    try {
      var list = await api('GET', '/api/files');
      state.files = list.files;
      render();
      await usage();
    } catch (e) {
      if (state.user) say(describe(e));
    }
  }

  async function usage() {
    var w = await api('GET', '/api/whoami');
    var quota = w.quota;
    var used = $('usage-used'), staged = $('usage-staged');
    if (quota) {
      used.style.width = Math.min(100, 100 * w.used / quota) + '%';
      staged.style.width = Math.min(100, 100 * w.staged / quota) + '%';
    } else {
      used.style.width = w.used ? '100%' : '0';
      staged.style.width = '0';
    }
    $('usage-text').textContent = iec(w.used) + ' used in ' + w.files + ' file' + (w.files === 1 ? '' : 's') +
      (w.staged ? ', ' + iec(w.staged) + ' in unfinished uploads' : '') +
      (quota ? ', of ' + iec(quota) : ', no quota');
  }

  function sorted() {
    var key = state.sort, dir = state.desc ? -1 : 1;
    var filter = $('filter').value.trim().toLowerCase();
    return state.files
      .filter(function (f) { return !filter || f.name.toLowerCase().indexOf(filter) >= 0; })
      .sort(function (a, b) {
        var x = a[key], y = b[key];
        if (x === null) x = '';
        if (y === null) y = '';
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

  function render() {
    var body = document.querySelector('#files tbody');
    body.textContent = '';
    var shown = sorted();
    shown.forEach(function (f) {
      var tr = el('tr');
      tr.dataset.name = f.name;
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
      dl.href = '/api/files/' + path(f.name);
      dl.setAttribute('download', f.name);
      dl.setAttribute('aria-label', 'Download ' + f.name);
      actions.appendChild(dl);
      var rn = el('button', 'plain rename', 'Rename');
      rn.type = 'button';
      rn.setAttribute('aria-label', 'Rename ' + f.name);
      rn.addEventListener('click', function () { rename(tr, name, f.name); });
      actions.appendChild(rn);
      var del = el('button', 'danger delete', 'Delete');
      del.type = 'button';
      del.setAttribute('aria-label', 'Delete ' + f.name);
      del.addEventListener('click', function () { remove(f.name); });
      actions.appendChild(del);
      tr.appendChild(actions);
      body.appendChild(tr);
    });
    $('empty').hidden = state.files.length > 0;
    $('count').textContent = shown.length === state.files.length
      ? state.files.length + ' files' : shown.length + ' of ' + state.files.length + ' files';
    document.querySelectorAll('#files th').forEach(function (th) {
      var b = th.querySelector('button');
      if (!b) return;
      if (b.dataset.sort === state.sort) th.setAttribute('aria-sort', state.desc ? 'descending' : 'ascending');
      else th.removeAttribute('aria-sort');
    });
  }

  document.querySelectorAll('#files th button').forEach(function (b) {
    b.addEventListener('click', function () {
      if (state.sort === b.dataset.sort) state.desc = !state.desc;
      else { state.sort = b.dataset.sort; state.desc = false; }
      render();
    });
  });
  $('filter').addEventListener('input', render);

  function rename(tr, cell, from) {
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
        await api('POST', '/api/rename', { from: from, to: to });
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

  async function remove(name) {
    if (!window.confirm('Delete ' + name + '? This cannot be undone.')) return;
    try {
      await api('DELETE', '/api/files/' + path(name));
      say('Deleted ' + name + '.', true);
    } catch (e) {
      say(describe(e));
    }
    await refresh();
  }

  // --- uploads ------------------------------------------------------

  var queue = [];
  var busy = false;

  function enqueue(files) {
    for (var i = 0; i < files.length; i++) {
      var f = files[i];
      var li = el('li', 'upload');
      li.dataset.name = f.name;
      li.appendChild(el('div', 'name', f.name));
      var bar = el('progress');
      bar.max = Math.max(1, f.size);
      bar.value = 0;
      bar.setAttribute('aria-label', 'upload of ' + f.name);
      li.appendChild(bar);
      li.appendChild(el('div', 'status', 'waiting'));
      $('uploads').appendChild(li);
      queue.push({ file: f, li: li, bar: bar });
    }
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
        say(job.file.name + ': ' + describe(e));
      }
      await refresh();
    }
    busy = false;
  }

  function status(job, text) { job.li.querySelector('.status').textContent = text; }

  async function read(blob) {
    return new Uint8Array(await blob.arrayBuffer());
  }

  /** Uploads one file: asks where to continue, hashes what the server
   * holds from the local file, then sends the rest in pieces; the last
   * carries the MD5, which the server checks before the file appears. */
  async function upload(job) {
    var file = job.file, size = file.size, name = path(file.name), piece = pieceFor(size);
    for (var attempt = 0; attempt < 3; attempt++) {
      var where = await api('GET', '/api/uploads/' + name + '?size=' + size);
      var offset = where.offset;
      var md5 = new window.NetdiskMD5();
      if (offset > 0) {
        job.li.dataset.resumed = String(offset);
        status(job, 'resuming at ' + iec(offset) + ': checking the bytes already sent…');
        for (var p = 0; p < offset; p += READ) {
          md5.update(await read(file.slice(p, Math.min(offset, p + READ))));
        }
      }
      var began = performance.now(), first = offset, pos = offset;
      var conflict = false;
      while (true) {
        var end = Math.min(size, pos + piece);
        var bytes = await read(file.slice(pos, end));
        md5.update(bytes);
        var last = end === size;
        var url = '/api/uploads/' + name + '?size=' + size + '&offset=' + pos;
        var digest = last ? md5.hex() : null;
        if (last) url += '&md5=' + digest;
        var res = await put(url, bytes, function (loaded) {
          progress(job, pos + loaded, size, first, began, offset);
        });
        if (res.status === 409) { conflict = true; break; }
        if (res.status === 201) {
          if (res.body.md5 !== digest) throw new Error('the server stored another MD5');
          job.bar.value = job.bar.max;
          job.li.classList.add('done');
          job.li.dataset.md5 = res.body.md5;
          status(job, 'done: ' + iec(size) + ', MD5 ' + res.body.md5 +
            (offset ? ' (resumed at ' + iec(offset) + ')' : ''));
          return;
        }
        if (res.status !== 200) {
          var b = res.body || {};
          throw new ApiError(res.status, b.error || 'HTTP_' + res.status, b.message || 'upload failed', b);
        }
        pos = res.body.offset;
        if (pos !== end) { conflict = true; break; }
      }
      if (!conflict) break;
    }
    throw new Error('the upload kept moving under this page; try again');
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

  $('picker').addEventListener('change', function () {
    enqueue($('picker').files);
    $('picker').value = '';
  });
  var drop = $('drop');
  ['dragenter', 'dragover'].forEach(function (t) {
    drop.addEventListener(t, function (ev) { ev.preventDefault(); drop.classList.add('over'); });
  });
  ['dragleave', 'drop'].forEach(function (t) {
    drop.addEventListener(t, function () { drop.classList.remove('over'); });
  });
  drop.addEventListener('drop', function (ev) {
    ev.preventDefault();
    if (ev.dataTransfer && ev.dataTransfer.files.length) enqueue(ev.dataTransfer.files);
  });

  start();
})();
