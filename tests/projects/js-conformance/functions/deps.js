// `dependencies` of package.json are require()-able; `devDependencies` are never installed.
const isNumber = require('is-number');

exports.handler = (context, event, callback) => {
  let leftPad;
  try {
    leftPad = require('left-pad');
  } catch (err) {
    leftPad = err.code;
  }
  return callback(null, {
    isNumber: [isNumber(5), isNumber('5'), isNumber('five')],
    version: require('is-number/package.json').version,
    devDependency: typeof leftPad === 'function' ? 'installed' : leftPad,
  });
};
