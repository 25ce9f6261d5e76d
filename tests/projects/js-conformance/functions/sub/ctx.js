exports.handler = (context, event, callback) => callback(null, { PATH: context.PATH });
