// Console output at every level, each line tagged with `event.tag`.
exports.handler = (context, event, callback) => {
  const { tag } = event;
  console.log(`log line ${tag}`);
  console.info(`info line ${tag}`);
  console.debug(`debug line ${tag}`);
  console.warn(`warn line ${tag}`);
  console.error(`error line ${tag}`);
  process.stdout.write(`stdout write ${tag}\n`);
  process.stderr.write(`stderr write ${tag}\n`);
  return callback(null, 'logged');
};
