'use strict';
// Preloaded into twilio-run by the bench (NODE_OPTIONS=--require): twilio-run calls
// app.listen(port), which binds every interface; the bench serves on 127.0.0.1 only.
const net = require('net');

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function listenOnLoopback(...args) {
  const port = args[0];
  if (typeof port === 'number' || (typeof port === 'string' && /^\d+$/.test(port))) {
    const callback = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined;
    return listen.call(this, { port: Number(port), host: '127.0.0.1' }, callback);
  }
  return listen.apply(this, args);
};
