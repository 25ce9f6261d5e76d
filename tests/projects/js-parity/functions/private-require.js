const { shout } = require(Runtime.getFunctions()['lib/shout'].path);

exports.handler = (context, event, callback) => callback(null, shout(event.word || 'ahoy'));
