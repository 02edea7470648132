// Preloaded into the Node test peers (NODE_OPTIONS="--require .../loopback.cjs") so that a server
// which calls `listen(port)` without a host listens on 127.0.0.1 only, never on every interface:
// tests must keep their traffic on loopback. Set PEER_HOST to choose another loopback address.
'use strict';
const net = require('node:net');

const host = process.env.PEER_HOST || '127.0.0.1';
const listen = net.Server.prototype.listen;

net.Server.prototype.listen = function listenOnLoopback(...args) {
  const first = args[0];
  const isPort = typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first));
  if (isPort && typeof args[1] !== 'string') {
    args.splice(1, 0, host);
  } else if (first && typeof first === 'object' && !first.path && first.host === undefined) {
    args[0] = { ...first, host };
  }
  return listen.apply(this, args);
};
