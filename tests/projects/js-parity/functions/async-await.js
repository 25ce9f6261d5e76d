exports.handler = async (context, event, callback) => {
  await new Promise((resolve) => setTimeout(resolve, 10));
  return callback(null, { awaited: true });
};
