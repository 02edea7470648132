// Preloaded into the conformance suite by scripts/conformance (NODE_OPTIONS="--require …") so
// that its mock servers listen on loopback only, like every other test peer.
//
// It builds on tests/peers/npm/loopback.cjs, which adds a host to `listen(port)`. With a host,
// Node binds only after a `dns.lookup` of it, which is asynchronous even for an IP literal, and
// several scenarios read `server.address().port` straight after `listen(0)`, before the bind.
// So an IP literal is "looked up" at once here: the bind then happens inside `listen`, as it
// does without a host. Names still go to the real resolver.
'use strict';
const dns = require('node:dns');
const net = require('node:net');

require('../peers/npm/loopback.cjs');

const lookup = dns.lookup;
dns.lookup = function lookupLiteralsAtOnce(hostname, options, callback) {
  const family = net.isIP(hostname);
  const cb = typeof options === 'function' ? options : callback;
  const opts = typeof options === 'object' && options !== null ? options : {};
  if (family === 0 || typeof cb !== 'function') {
    return lookup.apply(this, arguments);
  }
  if (opts.all) {
    cb(null, [{ address: hostname, family }]);
  } else {
    cb(null, hostname, family);
  }
  return {};
};
