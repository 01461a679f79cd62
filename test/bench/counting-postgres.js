// postgres.js with a `debug` callback that counts every statement it sends.
import postgres from 'postgres'
import { countQuery } from './query-count.js'

export default function countingPostgres (url, options) {
  if (typeof url === 'object' && url !== null) [url, options] = [undefined, url]
  const debug = options?.debug
  return postgres(url, {
    ...options,
    debug: (connection, query, parameters, types) => {
      countQuery(query)
      if (typeof debug === 'function') debug(connection, query, parameters, types)
    }
  })
}
Object.assign(countingPostgres, postgres)
