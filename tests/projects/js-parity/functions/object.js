exports.handler = (context, event, callback) => callback(null, { a: 1, b: [1, 2], c: null, d: 'ü', e: { f: true } });
