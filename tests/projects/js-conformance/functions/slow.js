// Never calls back in time (this function has a 1 s time limit in the tests' config).
const os = require('os');

exports.handler = async (context, event, callback) => {
  console.log(`WORKER ${os.hostname()}:${process.pid}`);
  if (event.mode === 'busy') {
    for (;;) {
      // a CPU loop the runner cannot interrupt
    }
  }
  if (event.mode === 'sleep') {
    setTimeout(() => callback(null, 'too late'), 5000);
    return;
  }
  if (event.mode === 'await-forever') {
    await new Promise(() => {});
  }
  // mode "never": return without calling back
};
