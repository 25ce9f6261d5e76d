// Soak: leaves a worker_threads Worker running after the callback.
const { Worker } = require('worker_threads');

exports.handler = (context, event, callback) => {
  new Worker('setInterval(() => {}, 100);', { eval: true });
  callback(null, 'worker started');
};
