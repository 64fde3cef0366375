/* The page's hashing, off its main thread: a Web Worker that keeps the
 * running MD5 of one upload. The page posts the pieces of the file (as
 * Blobs: the worker reads them itself, so the page never holds the bytes)
 * in order, and asks for the digest at the end. Messages:
 *   {blob}             hash these bytes next; answered {hashed: size}
 *   {digest: true}     answered {md5: hex} once everything before it is hashed
 * One worker serves one upload. Errors are answered {error: text}. */
'use strict';
importScripts('/md5.js');

var md5 = new self.NetdiskMD5();
/** Messages run one after another, each after the one before it. */
var chain = Promise.resolve();

self.onmessage = function (e) {
  var m = e.data;
  chain = chain.then(async function () {
    try {
      if (m.blob) {
        md5.update(new Uint8Array(await m.blob.arrayBuffer()));
        self.postMessage({ hashed: m.blob.size });
      } else if (m.digest) {
        self.postMessage({ md5: md5.hex() });
      }
    } catch (err) {
      self.postMessage({ error: String(err && err.message || err) });
    }
  });
};
