/*
 * sparkzoo's Spark SQL functions, served by a V2 function catalog.
 *
 * Why Java: `array_to_vector` (Spark ML) is a Scala UDF over Seq[Double], so every element of a
 * 2048-wide deep-feature array is boxed and unboxed on its way into the vector. `dense_vector`
 * wraps a double array into Spark ML's vector layout without touching the elements: the vector's
 * `values` field is the array itself. Spark calls the `invoke` method from generated code.
 *
 * Build: python scripts/build_jar.py (writes zoo/runtime/jvm/sparkzoo-functions.jar next to this file).
 * Used by: zoo/runtime/jvm_functions.py, which registers the catalog and falls back to Spark's own
 * functions where the jar cannot be loaded.
 */
package org.sparkzoo.spark;

import org.apache.spark.ml.linalg.VectorUDT;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.catalyst.analysis.NoSuchFunctionException;
import org.apache.spark.sql.catalyst.expressions.GenericInternalRow;
import org.apache.spark.sql.catalyst.expressions.UnsafeArrayData;
import org.apache.spark.sql.catalyst.util.ArrayData;
import org.apache.spark.sql.connector.catalog.FunctionCatalog;
import org.apache.spark.sql.connector.catalog.Identifier;
import org.apache.spark.sql.connector.catalog.functions.BoundFunction;
import org.apache.spark.sql.connector.catalog.functions.ScalarFunction;
import org.apache.spark.sql.connector.catalog.functions.UnboundFunction;
import org.apache.spark.sql.types.ArrayType;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.sql.util.CaseInsensitiveStringMap;

/** The catalog: register with spark.sql.catalog.NAME=org.sparkzoo.spark.ZooFunctions. */
public final class ZooFunctions implements FunctionCatalog {
    private String name = "sparkzoo";

    @Override
    public void initialize(String name, CaseInsensitiveStringMap options) {
        this.name = name;
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public Identifier[] listFunctions(String[] namespace) {
        return new Identifier[] {Identifier.of(new String[0], DenseVector.NAME)};
    }

    @Override
    public UnboundFunction loadFunction(Identifier ident) throws NoSuchFunctionException {
        if (ident.name().equalsIgnoreCase(DenseVector.NAME)) {
            return new DenseVector();
        }
        throw new NoSuchFunctionException(ident);
    }

    /** dense_vector(array<double>) -> Spark ML dense vector holding the same values (null -> null). */
    public static final class DenseVector implements UnboundFunction, ScalarFunction<InternalRow> {
        static final String NAME = "dense_vector";
        private static final DataType INPUT = DataTypes.createArrayType(DataTypes.DoubleType, true);
        private static final Byte DENSE = (byte) 1;

        @Override
        public String name() {
            return NAME;
        }

        @Override
        public String description() {
            return "dense_vector(array<double>): a Spark ML dense vector with the array's values, without copying them";
        }

        @Override
        public BoundFunction bind(StructType inputType) {
            if (inputType.fields().length != 1 || !(inputType.fields()[0].dataType() instanceof ArrayType)
                    || ((ArrayType) inputType.fields()[0].dataType()).elementType() != DataTypes.DoubleType) {
                throw new UnsupportedOperationException(NAME + " takes one array<double> argument, got " + inputType.simpleString());
            }
            return this;
        }

        @Override
        public DataType[] inputTypes() {
            return new DataType[] {INPUT};
        }

        @Override
        public DataType resultType() {
            return new VectorUDT();
        }

        @Override
        public String canonicalName() {
            return "sparkzoo." + NAME;
        }

        /** Called from generated code; the result's values are the input array (no element copy). */
        public InternalRow invoke(ArrayData values) {
            if (values == null) {
                return null;
            }
            ArrayData array = values instanceof UnsafeArrayData ? values : UnsafeArrayData.fromPrimitiveArray(values.toDoubleArray());
            return new GenericInternalRow(new Object[] {DENSE, null, null, array});
        }

        @Override
        public InternalRow produceResult(InternalRow input) {
            return input.isNullAt(0) ? null : invoke(input.getArray(0));
        }
    }
}
