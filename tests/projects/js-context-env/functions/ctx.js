exports.handler = (context, event, callback) => {
  const data = {};
  for (const [key, value] of Object.entries(context)) {
    if (typeof value !== 'function' && key !== 'ACCOUNT_SID' && key !== 'AUTH_TOKEN') data[key] = value;
  }
  return callback(null, data);
};
