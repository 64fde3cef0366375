/* MD5 (RFC 1321), incremental: the page hashes a file as it reads it.
 * WebCrypto has no MD5. Loaded as a classic script (window.NetdiskMD5) and
 * by Node for the tests against RFC 1321's vectors (module.exports). */
(function (root) {
  'use strict';

  var S = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
    5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
    4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
    6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21
  ];
  var K = new Int32Array(64);
  for (var i = 0; i < 64; i++) {
    K[i] = Math.floor(Math.abs(Math.sin(i + 1)) * 4294967296) | 0;
  }
  var G = new Uint8Array(64);
  for (var j = 0; j < 64; j++) {
    G[j] = j < 16 ? j : j < 32 ? (5 * j + 1) & 15 : j < 48 ? (3 * j + 5) & 15 : (7 * j) & 15;
  }

  function MD5() {
    this.h = new Int32Array([0x67452301, 0xefcdab89 | 0, 0x98badcfe | 0, 0x10325476]);
    this.buf = new Uint8Array(64);
    this.used = 0;
    this.total = 0;
    this.w = new Int32Array(16);
  }

  MD5.prototype.block = function (b, o) {
    var w = this.w, h = this.h;
    for (var i = 0; i < 16; i++, o += 4) {
      w[i] = b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24);
    }
    var a = h[0], bb = h[1], c = h[2], d = h[3], f, t, x;
    for (var r = 0; r < 64; r++) {
      if (r < 16) f = (bb & c) | (~bb & d);
      else if (r < 32) f = (d & bb) | (~d & c);
      else if (r < 48) f = bb ^ c ^ d;
      else f = c ^ (bb | ~d);
      t = d;
      d = c;
      c = bb;
      x = (a + f + K[r] + w[G[r]]) | 0;
      bb = (bb + ((x << S[r]) | (x >>> (32 - S[r])))) | 0;
      a = t;
    }
    h[0] = (h[0] + a) | 0;
    h[1] = (h[1] + bb) | 0;
    h[2] = (h[2] + c) | 0;
    h[3] = (h[3] + d) | 0;
  };

  /** Adds bytes (a Uint8Array or an ArrayBuffer). */
  MD5.prototype.update = function (data) {
    var b = data instanceof Uint8Array ? data : new Uint8Array(data);
    var n = b.length, o = 0;
    this.total += n;
    if (this.used > 0) {
      var take = Math.min(64 - this.used, n);
      this.buf.set(b.subarray(0, take), this.used);
      this.used += take;
      o = take;
      if (this.used < 64) return this;
      this.block(this.buf, 0);
      this.used = 0;
    }
    for (; o + 64 <= n; o += 64) this.block(b, o);
    if (o < n) {
      this.buf.set(b.subarray(o), 0);
      this.used = n - o;
    }
    return this;
  };

  /** The digest as 32 lowercase hex digits; the hasher is done after it. */
  MD5.prototype.hex = function () {
    var bits = this.total * 8;
    var lo = bits % 4294967296, hi = Math.floor(bits / 4294967296);
    var pad = new Uint8Array((this.used < 56 ? 56 : 120) - this.used + 8);
    pad[0] = 0x80;
    var p = pad.length - 8;
    for (var i = 0; i < 4; i++) {
      pad[p + i] = (lo >>> (8 * i)) & 255;
      pad[p + 4 + i] = (hi >>> (8 * i)) & 255;
    }
    var total = this.total;
    this.update(pad);
    this.total = total;
    var out = '';
    for (var k = 0; k < 4; k++) {
      for (var m = 0; m < 4; m++) {
        var byte = (this.h[k] >>> (8 * m)) & 255;
        out += (byte < 16 ? '0' : '') + byte.toString(16);
      }
    }
    return out;
  };

  /** The MD5 of a whole string (UTF-8) or byte array. */
  MD5.of = function (data) {
    var bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
    return new MD5().update(bytes).hex();
  };

  if (typeof module !== 'undefined' && module.exports) module.exports = MD5;
  else root.NetdiskMD5 = MD5;
})(this);
