exports.handler = (context, event, callback) => {
  // Check to see if the Domain name is null
  const domain = context.DOMAIN_NAME || "No Domain available";
  // Respond with the Domain hosting this Function
  return callback(null, domain);
};
