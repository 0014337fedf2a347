// The upload page's script (oceandata.alloc.uploads_api): a file larger than the plain
// form takes goes in chunks through the REST API, with the session's CSRF token, its
// SHA-256 computed while it is read (browsers have no incremental SHA-256: Sha256 below).
"use strict";

const SHA256_K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);

class Sha256 {
  constructor() {
    this.h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                              0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    this.buf = new Uint8Array(64);
    this.fill = 0;
    this.length = 0;
    this.w = new Uint32Array(64);
  }

  block(b, o) {
    const w = this.w, h = this.h;
    for (let i = 0; i < 16; i++) {
      w[i] = (b[o + 4 * i] << 24) | (b[o + 4 * i + 1] << 16) | (b[o + 4 * i + 2] << 8) | b[o + 4 * i + 3];
    }
    for (let i = 16; i < 64; i++) {
      const a = w[i - 15], c = w[i - 2];
      const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
      const s1 = ((c >>> 17) | (c << 15)) ^ ((c >>> 19) | (c << 13)) ^ (c >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let [a, b2, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (hh + S1 + ((e & f) ^ (~e & g)) + SHA256_K[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b2) ^ (a & c) ^ (b2 & c))) | 0;
      hh = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b2; b2 = a; a = (t1 + t2) | 0;
    }
    h[0] += a; h[1] += b2; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }

  update(bytes) {
    let i = 0;
    this.length += bytes.length;
    if (this.fill > 0) {
      while (i < bytes.length && this.fill < 64) this.buf[this.fill++] = bytes[i++];
      if (this.fill < 64) return this;
      this.block(this.buf, 0);
      this.fill = 0;
    }
    for (; i + 64 <= bytes.length; i += 64) this.block(bytes, i);
    while (i < bytes.length) this.buf[this.fill++] = bytes[i++];
    return this;
  }

  hex() {
    const bits = this.length * 8;
    const tail = new Uint8Array((this.fill < 56 ? 64 : 128) - this.fill);
    tail[0] = 0x80;
    const view = new DataView(tail.buffer);
    view.setUint32(tail.length - 8, Math.floor(bits / 2 ** 32));
    view.setUint32(tail.length - 4, bits >>> 0);
    const length = this.length;
    this.update(tail);
    this.length = length;
    return Array.from(this.h, (x) => x.toString(16).padStart(8, "0")).join("");
  }
}

// a text of the page's language (the form's data-text-* attributes, from the catalogs),
// its {placeholders} filled; the English as a fallback
function say(form, key, fallback, values) {
  const text = form.dataset[key] || fallback;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
}

async function sendInChunks(form, file, show) {
  const api = form.dataset.api, csrf = form.dataset.csrf, chunk = Number(form.dataset.chunk);
  const call = async (method, path, body, type) => {
    const answer = await fetch(api + path, {
      method, body, credentials: "same-origin",
      headers: {"X-CSRF-Token": csrf, "Content-Type": type || "application/json"}});
    const data = await answer.json().catch(() => ({error: answer.statusText}));
    if (!answer.ok) throw new Error(data.error || answer.statusText);
    return data;
  };
  const name = (form.elements.filename.value || file.name).trim();
  let upload = await call("POST", `projects/${form.dataset.project}/uploads`,
                          JSON.stringify({filename: name, size: file.size}));
  const hash = new Sha256();
  let at = 0;
  while (at < file.size) {
    const bytes = new Uint8Array(await file.slice(at, at + chunk).arrayBuffer());
    let tries = 0;
    for (;;) {
      try {
        upload = await call("PUT", `uploads/${upload.id}/chunks?offset=${upload.received}`,
                            bytes.subarray(upload.received - at), "application/octet-stream");
        break;
      } catch (error) {  // a lost connection: ask what arrived, send the rest
        if (++tries > 3) throw error;
        upload = await call("GET", `uploads/${upload.id}`);
        if (upload.received < at) throw error;
      }
    }
    hash.update(bytes);
    at += bytes.length;
    show(say(form, "textSent", "{name}: {sent} of {size} bytes sent",
             {name, sent: at.toLocaleString(document.documentElement.lang || undefined),
              size: file.size.toLocaleString(document.documentElement.lang || undefined)}));
  }
  show(say(form, "textChecking", "{name}: checking…", {name}));
  return call("POST", `uploads/${upload.id}/complete`, JSON.stringify({sha256: hash.hex()}));
}

if (typeof document !== "undefined") {
  const form = document.getElementById("upload-form");
  const status = document.getElementById("upload-status");
  if (form) {
    form.addEventListener("submit", (event) => {
      const file = form.elements.file.files[0];
      const chunked = form.elements.chunked && form.elements.chunked.checked;
      if (!file || (!chunked && file.size <= Number(form.dataset.formMax))) return;  // the form
      event.preventDefault();
      sendInChunks(form, file, (text) => { status.textContent = text; })
        .then((upload) => { window.location = form.dataset.done + encodeURIComponent(upload.filename); })
        .catch((error) => {
          status.textContent = say(form, "textRefused", "refused: {reason}", {reason: error.message});
        });
    });
  }
}

if (typeof module !== "undefined") module.exports = {Sha256};
