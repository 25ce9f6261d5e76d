exports.handler = (context, event, callback) => callback(null, { greeting: context.GREETING, path: context.PATH });
