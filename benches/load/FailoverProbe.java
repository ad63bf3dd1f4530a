import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Produces to one partition, one record at a time (send().get(), acks=all), for SECONDS
 * seconds, and prints one line per outcome with the wall-clock time (ms since the epoch) at
 * which it was known, so a script can find the first successful produce after it killed the
 * partition's leader:
 *   OK <epoch_ms> <offset>
 *   ERR <epoch_ms> <exception class>: <message>
 * A failed send (delivery.timeout.ms reached, or a non-retriable error) is logged and the loop
 * goes on. Extra producer properties as k=v arguments override the defaults below.
 *
 * Usage: FailoverProbe BOOTSTRAP TOPIC PARTITION SECONDS [k=v...]
 */
public class FailoverProbe {
    public static void main(String[] args) throws Exception {
        if (args.length < 4) {
            System.err.println("usage: FailoverProbe BOOTSTRAP TOPIC PARTITION SECONDS [k=v...]");
            System.exit(2);
        }
        String topic = args[1];
        int partition = Integer.parseInt(args[2]);
        long endMs = System.currentTimeMillis() + Long.parseLong(args[3]) * 1000;
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.LINGER_MS_CONFIG, "0");
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
        for (int i = 4; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            props.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        byte[] value = new byte[100];
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            while (System.currentTimeMillis() < endMs) {
                try {
                    long offset = producer.send(new ProducerRecord<>(topic, partition, null, value))
                        .get(60, TimeUnit.SECONDS).offset();
                    System.out.println("OK " + System.currentTimeMillis() + " " + offset);
                } catch (Exception e) {
                    Throwable cause = e.getCause() != null ? e.getCause() : e;
                    System.out.println("ERR " + System.currentTimeMillis() + " " + cause.getClass().getSimpleName()
                        + ": " + String.valueOf(cause.getMessage()).replace('\n', ' '));
                    Thread.sleep(10);
                }
                System.out.flush();
            }
        }
    }
}
